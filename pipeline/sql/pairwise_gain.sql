-- Task x task matrix: relative loss gain of the row task when trained with the column task.
-- gain = (single-task loss - loss in the pair) / single-task loss, final epoch, full size,
-- mean over seeds; positive = the column task helps the row task. Parameter $split (val|test).
WITH final_loss AS (
    SELECT architecture, weighting, network, tasks, n_tasks, size, task, avg(value) AS loss
    FROM metrics
    WHERE metric = 'loss' AND split = $split AND epoch = epochs AND status = 'ok'
    GROUP BY ALL
),
single AS (
    SELECT architecture, weighting, task, loss AS single_loss
    FROM final_loss
    WHERE n_tasks = 1 AND size = 'full'
),
pair AS (
    SELECT architecture, weighting, task,
        list_filter(tasks, lambda t: t <> task)[1] AS partner,
        loss AS pair_loss
    FROM final_loss
    WHERE n_tasks = 2
)
SELECT pair.architecture, pair.weighting, pair.task, pair.partner,
    (single.single_loss - pair.pair_loss) / single.single_loss AS gain
FROM pair
JOIN single USING (architecture, weighting, task)
ORDER BY pair.architecture, pair.weighting, pair.task, pair.partner;
