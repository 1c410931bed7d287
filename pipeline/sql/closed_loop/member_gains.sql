-- Per multi-task network x member task x split: its final-epoch loss (mean over seeds) and the relative gain over the task's full-size single-task network.
WITH metrics AS (
    SELECT * FROM read_parquet($metrics)
),
final_epoch AS (
    -- A diverged network stops early: its last recorded epoch is its final one.
    SELECT architecture, weighting, network, seed, max(epoch) AS epoch
    FROM metrics
    GROUP BY ALL
),
final_loss AS (
    SELECT m.architecture, m.weighting, m.tasks, m.size, m.task, m.split,
           avg(m.value) AS loss, count(*) AS seeds
    FROM metrics AS m
    JOIN final_epoch USING (architecture, weighting, network, seed, epoch)
    WHERE m.metric = 'loss' AND m.split IN ('val', 'test') AND m.status = 'ok'
    GROUP BY ALL
),
single AS (
    SELECT architecture, weighting, task, split, loss AS single_loss
    FROM final_loss
    WHERE len(tasks) = 1 AND size = 'full'
)
SELECT f.architecture, f.weighting, f.tasks, f.task, f.split, f.loss, s.single_loss,
       (s.single_loss - f.loss) / s.single_loss AS gain, f.seeds
FROM final_loss AS f
JOIN single AS s USING (architecture, weighting, task, split)
WHERE len(f.tasks) > 1 AND f.size = 'full'
