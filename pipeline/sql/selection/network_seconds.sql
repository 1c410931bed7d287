-- Per method x network: in-process training seconds, summed over seeds (each seed's last
-- recorded wall_time_s: cumulative at its final epoch). What the controls cost, for people.
-- Parameters: $metrics (a collected METRICS Parquet file).
WITH per_seed AS (
    SELECT architecture, weighting, network, seed, max(wall_time_s) AS seconds
    FROM read_parquet($metrics)
    GROUP BY architecture, weighting, network, seed
)
SELECT architecture, weighting, network, sum(seconds) AS seconds
FROM per_seed
GROUP BY architecture, weighting, network
