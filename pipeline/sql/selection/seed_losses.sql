-- Per method x network x seed x task: the losses a network is judged by, at three epochs.
--
-- Reads the view `metrics` (the METRICS schema: one row per network x task x split x epoch x
-- metric). Parameters:
--   $esa_fraction  the early-stopping approximation's epoch, as a fraction of planned training
--   $tasks         the task names to keep (a VARCHAR list), or NULL for every task
-- The Python side materialises this as the temp table `seed_losses`, which candidates.sql,
-- candidate_seeds.sql and excluded.sql read, so the epoch logic lives in one place.
WITH loss AS (
    -- Only the training loss decides groupings; other metrics (roc_auc, ...) are for reports.
    SELECT architecture, weighting, network, size, cost, macs, seed, task, split, epoch, epochs,
        status, diverged_epoch, value
    FROM metrics
    WHERE metric = 'loss'
),
network_seed AS (
    -- One row per trained network and seed: its outcome and its final and early epochs.
    SELECT architecture, weighting, network, seed,
        any_value(size) AS size,
        any_value(cost) AS cost,
        any_value(macs) AS macs,
        -- 'failed' (a control whose training raised: pipeline/jobs.py) is left out alike.
        bool_or(status <> 'ok') AS diverged,
        bool_or(status = 'failed') AS failed,
        min(diverged_epoch) AS diverged_epoch,
        -- A diverged network stops early; its last recorded epoch is its final one.
        max(epoch) AS final_epoch,
        -- Standley's ESA judges a network after ~20% of its planned training; never before
        -- epoch 1. round() rounds halves away from zero.
        greatest(1, round($esa_fraction * any_value(epochs)))::INTEGER AS early_epoch
    FROM loss
    GROUP BY architecture, weighting, network, seed
),
val_total AS (
    -- The network's validation loss summed over *all* its tasks, per epoch: the criterion for
    -- its best epoch (a network is one checkpoint, so one epoch serves all its tasks).
    SELECT architecture, weighting, network, seed, epoch, sum(value) AS val_loss
    FROM loss
    WHERE split = 'val' AND isfinite(value)
    GROUP BY architecture, weighting, network, seed, epoch
),
best_epoch AS (
    -- Lowest summed validation loss; the earlier epoch wins a tie.
    SELECT architecture, weighting, network, seed, epoch AS best_epoch
    FROM (
        SELECT *, row_number() OVER (
            PARTITION BY architecture, weighting, network, seed ORDER BY val_loss, epoch
        ) AS rank
        FROM val_total
    )
    WHERE rank = 1
)
SELECT
    n.architecture, n.weighting, n.network, n.size, n.cost, n.macs, n.seed, n.diverged, n.failed,
    n.diverged_epoch, n.final_epoch, b.best_epoch, n.early_epoch, l.task,
    -- Pivot the three epochs x two splits into columns (one row per network x seed x task).
    max(l.value) FILTER (WHERE l.split = 'val' AND l.epoch = n.final_epoch) AS val_final,
    max(l.value) FILTER (WHERE l.split = 'test' AND l.epoch = n.final_epoch) AS test_final,
    max(l.value) FILTER (WHERE l.split = 'val' AND l.epoch = b.best_epoch) AS val_best,
    max(l.value) FILTER (WHERE l.split = 'test' AND l.epoch = b.best_epoch) AS test_best,
    max(l.value) FILTER (WHERE l.split = 'val' AND l.epoch = n.early_epoch) AS val_early
FROM network_seed AS n
JOIN loss AS l USING (architecture, weighting, network, seed)
-- LEFT: a network whose every validation loss is NaN has no best epoch, but still a row.
LEFT JOIN best_epoch AS b USING (architecture, weighting, network, seed)
WHERE $tasks IS NULL OR list_contains($tasks::VARCHAR[], l.task)
GROUP BY ALL
ORDER BY n.architecture, n.weighting, n.network, n.seed, l.task;
