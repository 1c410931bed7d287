-- Per task and network: spread over seeds of the final test metric (is an effect above noise?).
SELECT architecture, weighting, task, network,
    count(*) AS seeds, avg(value) AS mean, stddev_samp(value) AS std,
    min(value) AS min, max(value) AS max
FROM metrics
WHERE split = 'test' AND metric <> 'loss' AND epoch = epochs AND status = 'ok'
GROUP BY ALL
ORDER BY architecture, weighting, task, network;
