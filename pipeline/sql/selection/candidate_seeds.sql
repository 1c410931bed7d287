-- Per method x network x task x seed: the test losses of the candidates, for the seed spread.
--
-- Reads the temp table `seed_losses` (seed_losses.sql). The solve picks networks on the mean
-- over seeds; these rows re-score the picked set once per seed, whose standard deviation is the
-- spread the summary compares advantages against. No parameters.
WITH usable AS (
    SELECT architecture, weighting, network
    FROM seed_losses
    GROUP BY architecture, weighting, network
    HAVING NOT bool_or(diverged)
)
SELECT architecture, weighting, network, task, seed, test_final, test_best
FROM seed_losses
SEMI JOIN usable USING (architecture, weighting, network)
ORDER BY architecture, weighting, network, task, seed;
