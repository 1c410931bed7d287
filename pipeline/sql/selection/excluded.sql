-- Per method x network: the networks left out of the solve because they diverged, or (a
-- random control only) their training raised: status 'failed'.
--
-- Reads the temp table `seed_losses` (seed_losses.sql). One diverged seed is enough to exclude
-- the network (see candidates.sql). No parameters.
SELECT
    architecture, weighting, network,
    list(DISTINCT seed ORDER BY seed) FILTER (WHERE diverged) AS diverged_seeds,
    min(diverged_epoch) AS first_diverged_epoch,
    bool_or(failed) AS failed
FROM seed_losses
GROUP BY architecture, weighting, network
HAVING bool_or(diverged)
ORDER BY architecture, weighting, network;
