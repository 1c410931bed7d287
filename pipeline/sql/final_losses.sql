-- Per network x task x split: loss and metric at the final epoch, mean and spread over seeds.
WITH final_epoch AS (
    -- A diverged network stops early: its last recorded epoch is its final one.
    SELECT architecture, weighting, network, seed, max(epoch) AS epoch
    FROM metrics
    GROUP BY ALL
),
final_rows AS (
    SELECT m.*
    FROM metrics AS m
    JOIN final_epoch USING (architecture, weighting, network, seed, epoch)
)
SELECT
    architecture, weighting, network, any_value(size) AS size, any_value(cost) AS cost,
    task, split, metric,
    avg(value) AS mean,
    stddev_samp(value) AS std,
    count(*) AS seeds,
    -- 'failed': a control whose training raised (pipeline/jobs.py); NaN losses like a diverged one.
    bool_or(status <> 'ok') AS any_diverged
FROM final_rows
GROUP BY architecture, weighting, network, task, split, metric
ORDER BY architecture, weighting, network, task, split, metric;
