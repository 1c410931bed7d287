-- Per method x network x task: the candidate losses, mean and spread over seeds.
--
-- Reads the temp table `seed_losses` (seed_losses.sql). A network that diverged in any seed is
-- not a candidate at all (excluded.sql lists those): its mean would mix finished and aborted
-- runs, and its per-seed test totals would be undefined. No parameters.
WITH usable AS (
    SELECT architecture, weighting, network
    FROM seed_losses
    GROUP BY architecture, weighting, network
    HAVING NOT bool_or(diverged)
)
SELECT
    architecture, weighting, network,
    any_value(size) AS size,
    any_value(cost) AS cost,
    -- Multiply-adds (NULL for external results): the macs cost model divides by a reference.
    any_value(macs) AS macs,
    task,
    count(*) AS n_seeds,
    avg(val_final) AS val_final,
    avg(test_final) AS test_final,
    avg(val_best) AS val_best,
    avg(test_best) AS test_best,
    avg(val_early) AS val_early,
    -- Sample standard deviation over seeds; NULL with a single seed.
    stddev_samp(val_final) AS val_final_std,
    stddev_samp(test_final) AS test_final_std,
    stddev_samp(val_best) AS val_best_std,
    stddev_samp(test_best) AS test_best_std,
    stddev_samp(val_early) AS val_early_std
FROM seed_losses
SEMI JOIN usable USING (architecture, weighting, network)
GROUP BY architecture, weighting, network, task
ORDER BY architecture, weighting, network, task;
