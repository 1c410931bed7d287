"""The random baseline's sampler (baselines.random_draws): its draws are Standley's (main.cpp,
do_one_random: networks in a random order, each kept if it still fits), checked against that
walk written out literally; they are feasible and maximal; the seed fixes them."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy.stats import chi2_contingency

from pipeline.selection import baselines
from pipeline.selection.instances import planted
from pipeline.selection.solver import task_cost_bound


def literal_walk(cost: np.ndarray, limit: float, rng: np.random.Generator) -> frozenset[int]:
    """Standley's sampler as written: one random order, keep each network that still fits."""
    spent = 0.0
    kept = []
    for n in rng.permutation(len(cost)):
        if spent + cost[n] <= limit:
            spent += cost[n]
            kept.append(int(n))
    return frozenset(kept)


def tiny(costs: str) -> tuple[np.ndarray, np.ndarray]:
    """3 tasks: full and half singles, the pairs, the triple (10 networks)."""
    loss, cost = planted(3, (2, 3), seed=1)
    if costs == "mixed":  # many distinct costs, as with selection.cost: macs
        cost = np.random.default_rng(2).uniform(0.3, 1.2, cost.size).round(3)
    return loss, cost


def sets(draws: baselines.Draws) -> list[frozenset[int]]:
    return [frozenset(int(n) for n in row if n >= 0) for row in draws.kept[draws.done]]


@pytest.mark.parametrize("costs", ["units", "mixed"])
@pytest.mark.parametrize("limit", [1.0, 2.01, 3.5])
def test_same_distribution_as_the_literal_walk(costs, limit):
    loss, cost = tiny(costs)
    n = 20_000
    rng = np.random.default_rng(0)
    fast = Counter(sets(baselines.random_draws(loss, cost, limit, n, rng)))
    assert sum(fast.values()) == n  # without ``need`` every draw runs to its end
    rng = np.random.default_rng(1)
    walk = Counter(literal_walk(cost, limit, rng) for _ in range(n))
    # Same support (each set of a literal walk is one the fast sampler draws, and back) ...
    support = sorted(set(fast) | set(walk), key=sorted)
    rare = [s for s in support if fast[s] + walk[s] < 20]
    assert set(fast) == set(walk) or all(fast[s] + walk[s] < 5 for s in rare)
    # ... and the same frequencies: a chi-square test of homogeneity (rare sets pooled).
    common = [s for s in support if s not in rare]
    table = np.array(
        [
            [fast[s] for s in common] + [sum(fast[s] for s in rare)],
            [walk[s] for s in common] + [sum(walk[s] for s in rare)],
        ]
    )
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] > 1:
        assert chi2_contingency(table).pvalue > 1e-3


def test_draws_are_feasible_and_maximal():
    loss, cost = planted(8, (2, 3), seed=3)
    limit = 4.01
    rng = np.random.default_rng(5)
    draws = baselines.random_draws(loss, cost, limit, 3000, rng)
    assert draws.done.all()
    for row, best in zip(draws.kept, draws.best):
        chosen = row[row >= 0]
        assert len(set(chosen.tolist())) == chosen.size  # no network twice
        spent = cost[chosen].sum()
        assert spent <= limit + 1e-9
        others = np.setdiff1d(np.arange(cost.size), chosen)
        assert (spent + cost[others] > limit).all()  # nothing more fits
        expect = np.nanmin(np.where(np.isnan(loss[chosen]), np.inf, loss[chosen]), axis=0)
        np.testing.assert_array_equal(best, expect)


def test_cutting_hopeless_draws_short_keeps_the_covering_rate():
    loss, cost = planted(8, (2, 3), seed=3)
    limit = 3.01  # the cheapest cover of 8 tasks with triples costs 3: covers are rare
    need = task_cost_bound(loss, cost)
    n = 20_000
    full = baselines.random_draws(loss, cost, limit, n, np.random.default_rng(7))
    cut = baselines.random_draws(loss, cost, limit, n, np.random.default_rng(8), need)
    p_full = (full.done & np.isfinite(full.best).all(axis=1)).mean()
    p_cut = (cut.done & np.isfinite(cut.best).all(axis=1)).mean()
    # Every draw cut short would have been rejected: the covering rate is the same.
    assert 0 < p_full < 0.5
    assert abs(p_full - p_cut) < 4 * np.sqrt(2 * p_full * (1 - p_full) / n)
    assert (~cut.done).sum() > n / 2  # most draws were cut short


def test_mean_matches_the_literal_walk_and_the_seed_fixes_it():
    loss, cost = planted(6, (2, 3), seed=4)
    budget, tol = 3.0, 0.01
    a = baselines.random_choice(loss, cost, budget, tol, samples=4000, seed=11)
    b = baselines.random_choice(loss, cost, budget, tol, samples=4000, seed=11)
    c = baselines.random_choice(loss, cost, budget, tol, samples=4000, seed=12)
    assert np.array_equal(a.per_task, b.per_task) and (a.samples, a.attempts) == (
        b.samples,
        b.attempts,
    )
    assert a.total != c.total
    assert a.samples == 4000
    # The literal walk's mean over its covering draws agrees within sampling noise.
    rng = np.random.default_rng(0)
    loss_inf = np.where(np.isnan(loss), np.inf, loss)
    totals = []
    while len(totals) < 4000:
        kept = sorted(literal_walk(cost, budget + tol, rng))
        best = loss_inf[kept].min(axis=0)
        if np.isfinite(best).all():
            totals.append(best.sum())
    totals = np.array(totals)
    se = totals.std() * np.sqrt(2 / 4000)
    assert abs(a.total - totals.mean()) < 4 * se


def test_no_draw_below_the_cover_bound():
    loss, cost = planted(6, (2, 3), seed=4)
    assert baselines.random_choice(loss, cost, 1.5, 0.01, 100, 0) is None  # 6 tasks need 2


def test_draw_cap_is_fixed_by_the_instance_not_the_machine():
    # The full samples x 50 draws on 12 and 30 tasks with triples at every budget up to n;
    # fewer, but never fewer than the samples asked, when draws are long over many tasks.
    for n_task in (12, 30):
        _, cost = planted(n_task, (3,), seed=0)
        steps = baselines.max_steps(cost, n_task + 0.01)
        assert baselines.max_draws(1000, n_task, steps) == 50_000
    _, cost = planted(100, (2,), seed=0)
    steps = baselines.max_steps(cost, 100.01)
    assert 1000 <= baselines.max_draws(1000, 100, steps) < 50_000
    assert baselines.max_draws(1000, 617, 1235) == 1000
