-- Externally trained results, in the shape of seed_losses.sql (one row per method x network x
-- seed x task), so candidates.sql, candidate_seeds.sql and excluded.sql serve both sources.
--
-- Reads the view `external` (docs/external-results.md). The Python reader fills the optional
-- columns first (architecture and weighting 'external', size NULL, seed 0, status 'ok'), so
-- this query sees one shape. Parameters:
--   $tasks  the task names to keep (a VARCHAR list), or NULL for every task
SELECT
    architecture, weighting, network, size, cost, NULL::BIGINT AS macs, seed,
    status = 'diverged' AS diverged,
    FALSE AS failed,
    NULL::INTEGER AS diverged_epoch,
    NULL::INTEGER AS final_epoch,
    NULL::INTEGER AS best_epoch,
    NULL::INTEGER AS early_epoch,
    task,
    -- An external result carries one validation and one test loss per task: they serve as
    -- both the final and the best-val epoch's.
    val_loss AS val_final,
    test_loss AS test_final,
    val_loss AS val_best,
    test_loss AS test_best,
    early_loss AS val_early
FROM external
WHERE $tasks IS NULL OR list_contains($tasks::VARCHAR[], task)
ORDER BY architecture, weighting, network, seed, task;
