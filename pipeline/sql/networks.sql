-- One row per trained network and seed: size, cost, status, epochs run, training seconds.
SELECT architecture, weighting, network, seed, any_value(size) AS size,
    any_value(n_tasks) AS n_tasks, any_value(cost) AS cost, any_value(status) AS status,
    any_value(diverged_epoch) AS diverged_epoch, max(epoch) AS epochs_run,
    max(wall_time_s) AS train_seconds, any_value(device) AS device
FROM metrics
GROUP BY architecture, weighting, network, seed
ORDER BY architecture, weighting, n_tasks, network, seed;
