-- Per network and seed: the epoch with the lowest validation loss (summed over its tasks).
WITH val_loss AS (
    SELECT architecture, weighting, network, seed, epoch, sum(value) AS val_loss
    FROM metrics
    WHERE split = 'val' AND metric = 'loss' AND isfinite(value)
    GROUP BY ALL
),
ranked AS (
    SELECT *,
        row_number() OVER (
            PARTITION BY architecture, weighting, network, seed ORDER BY val_loss, epoch
        ) AS rank
    FROM val_loss
)
SELECT architecture, weighting, network, seed, epoch AS best_epoch, val_loss
FROM ranked
WHERE rank = 1
ORDER BY architecture, weighting, network, seed;
