"""The solver is exact: it matches brute force over every subset on small random instances."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.selection.scoring import total
from pipeline.selection.solver import (
    BudgetSolver,
    InfeasibleBudget,
    WorstCover,
    cheapest_cover,
    solve,
    solve_budgets,
    worst_cover,
)


@st.composite
def instances(draw):
    n_task = draw(st.integers(1, 4))
    n_net = draw(st.integers(1, 8))
    loss = np.full((n_net, n_task), np.nan)
    for n in range(n_net):
        members = draw(
            st.lists(st.integers(0, n_task - 1), min_size=1, max_size=n_task, unique=True)
        )
        # Three decimals: ties between networks happen, as in Standley's tables.
        loss[n, members] = [draw(st.integers(0, 1000)) / 1000 for _ in members]
    cost = np.array([draw(st.sampled_from([0.5, 1.0, 1.0004, 1.5])) for _ in range(n_net)])
    budget = draw(st.sampled_from([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0]))
    return loss, cost, budget


def covering_subsets(loss, cost, limit):
    covers = ~np.isnan(loss)
    for k in range(1, len(cost) + 1):
        for subset in itertools.combinations(range(len(cost)), k):
            if cost[list(subset)].sum() <= limit and covers[list(subset)].any(axis=0).all():
                yield subset


@settings(max_examples=250, deadline=None)
@given(instances(), st.sampled_from([0.0, 0.01]))
def test_solve_matches_brute_force(instance, tolerance):
    loss, cost, budget = instance
    limit = budget + tolerance
    best = min((total(loss, s) for s in covering_subsets(loss, cost, limit)), default=None)
    if best is None:
        with pytest.raises(InfeasibleBudget):
            solve(loss, cost, budget, tolerance)
        return
    solution = solve(loss, cost, budget, tolerance)
    chosen = list(solution.chosen)
    assert solution.objective == pytest.approx(best, abs=1e-9)
    assert total(loss, chosen) == pytest.approx(best, abs=1e-9)
    assert cost[chosen].sum() <= limit + 1e-9
    assert solution.cost == pytest.approx(cost[chosen].sum())
    # Every deployed network serves some task; each task's server is deployed and has it.
    assert set(solution.assignment) == set(chosen)
    assert all(not np.isnan(loss[n, t]) for t, n in enumerate(solution.assignment))


@settings(max_examples=150, deadline=None)
@given(instances(), st.integers(0, 3), st.booleans())
def test_subset_and_facility_blocks_together_match_brute_force(instance, subset_max, warm):
    """Networks above subset_max tasks enter as facility-location blocks, the rest as served
    subsets; any mix, with or without a warm start from a smaller budget, is exact."""
    loss, cost, budget = instance
    best = min((total(loss, s) for s in covering_subsets(loss, cost, budget)), default=None)
    if best is None:
        with pytest.raises(InfeasibleBudget):
            BudgetSolver(loss, cost, subset_max=subset_max).solve(budget)
        return
    solver = BudgetSolver(loss, cost, subset_max=subset_max, warm_start=warm)
    if warm:
        try:
            solver.solve(budget - 0.5)
        except InfeasibleBudget:
            pass
    solution = solver.solve(budget)
    assert solution.objective == pytest.approx(best, abs=1e-9)
    assert cost[list(solution.chosen)].sum() <= budget + 1e-9


@settings(max_examples=150, deadline=None)
@given(instances())
def test_worst_cover_matches_brute_force(instance):
    loss, cost, budget = instance
    maximal = [
        s for s in covering_subsets(loss, cost, budget) if budget - cost[list(s)].sum() < cost.min()
    ]
    found = worst_cover(loss, cost, budget)
    if not maximal:
        assert found is None
        return
    chosen, value, gap = found
    assert gap == 0.0
    assert value == pytest.approx(max(total(loss, s) for s in maximal), abs=1e-9)
    assert budget - cost.min() < cost[list(chosen)].sum() <= budget + 1e-9


@settings(max_examples=100, deadline=None)
@given(instances(), st.sampled_from([0.0, 0.01]))
def test_one_worst_cover_model_matches_brute_force_at_every_budget(instance, tolerance):
    # Built once and re-solved per budget (only the budget row changes), in an order that goes
    # down as well as up; with Standley's costs the budget row is integral.
    loss, cost, _ = instance
    model = WorstCover(loss, cost, tolerance)
    for budget in [2.0, 0.5, 4.0, 1.0, 3.0, 1.5]:
        limit = budget + tolerance
        maximal = [
            s
            for s in covering_subsets(loss, cost, limit)
            if limit - cost[list(s)].sum() < cost.min()
        ]
        found = model.solve(budget)
        assert model.needs_mip(budget) or found is None
        if not maximal:
            assert found is None
            continue
        chosen, value, gap = found
        assert gap == 0.0
        assert value == pytest.approx(max(total(loss, s) for s in maximal), abs=1e-9)
        assert limit - cost.min() < cost[list(chosen)].sum() <= limit + 1e-9


@settings(max_examples=100, deadline=None)
@given(instances())
def test_cheapest_cover_matches_brute_force(instance):
    loss, cost, _ = instance
    if np.isnan(loss).all(axis=0).any():
        return
    best = min(cost[list(s)].sum() for s in covering_subsets(loss, cost, np.inf))
    assert cheapest_cover(loss, cost) == pytest.approx(best)


def test_budget_below_cheapest_cover_is_a_clear_error():
    loss = np.array([[0.1, np.nan], [np.nan, 0.2], [0.3, 0.3]])
    cost = np.array([0.5, 0.5, 1.0004])
    with pytest.raises(InfeasibleBudget, match=r"budget 0.9 .* cheapest .* costs 1"):
        solve(loss, cost, 0.9)
    assert solve_budgets(loss, cost, [0.9, 1.0]) == [None, solve(loss, cost, 1.0)]


def test_cost_tolerance_admits_extra_heads():
    # A two-task network costs 1.0004 (one extra head): budget 1 buys it only with slack.
    loss = np.array([[0.3, 0.3]])
    cost = np.array([1.0004])
    with pytest.raises(InfeasibleBudget):
        solve(loss, cost, 1.0, tolerance=0.0)
    assert solve(loss, cost, 1.0, tolerance=0.01).chosen == (0,)


def test_uncovered_task_is_reported():
    with pytest.raises(InfeasibleBudget, match="served by no network"):
        solve(np.array([[0.1, np.nan]]), np.array([1.0]), 5.0)


def test_worst_cover_stopped_before_any_cover_is_not_called_infeasible() -> None:
    from pipeline.selection.instances import planted
    from pipeline.selection.solver import WorstCover

    loss, cost = planted(30, (2, 3), seed=0)
    model = WorstCover(loss, cost)
    assert model.solve(10, time_limit=1e-9) == ((), pytest.approx(float("nan"), nan_ok=True),
                                                 float("inf"))  # fmt: skip
    assert model.solve(9) is None  # below the cheapest cover of 30 tasks by triples: none
