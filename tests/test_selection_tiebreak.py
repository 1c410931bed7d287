"""Ties are broken by one rule (issue 20 item 10): among answers with the optimal objective, fewer
networks, then lower cost, then measured over estimated, then fewer tasks. Checked against brute
force on small instances where ties are common."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.selection.scoring import total
from pipeline.selection.solver import BudgetSolver, InfeasibleBudget, PlainSolver, dominated


@st.composite
def tied_instances(draw):
    n_task = draw(st.integers(1, 4))
    n_net = draw(st.integers(1, 9))
    loss = np.full((n_net, n_task), np.nan)
    for n in range(n_net):
        members = draw(
            st.lists(st.integers(0, n_task - 1), min_size=1, max_size=n_task, unique=True)
        )
        # Quarters: sums are exact in binary, and equal objectives are frequent.
        loss[n, members] = [draw(st.integers(1, 4)) / 4 for _ in members]
    cost = np.array([draw(st.sampled_from([0.5, 1.0, 1.5])) for _ in range(n_net)])
    estimated = np.array([draw(st.booleans()) for _ in range(n_net)])
    budget = draw(st.sampled_from([1.0, 1.5, 2.0, 3.0, 4.0]))
    return loss, cost, estimated, budget


def tie_key(loss, cost, estimated, subset):
    """The rule's key of a choice: (objective, networks, cost, estimated, tasks)."""
    s = list(subset)
    return (
        total(loss, s),
        len(s),
        float(cost[s].sum()),
        int(estimated[s].sum()),
        int((~np.isnan(loss[s])).sum()),
    )


def brute_force(loss, cost, estimated, limit):
    covers = ~np.isnan(loss)
    keys = [
        tie_key(loss, cost, estimated, s)
        for k in range(1, len(cost) + 1)
        for s in itertools.combinations(range(len(cost)), k)
        if cost[list(s)].sum() <= limit and covers[list(s)].any(axis=0).all()
    ]
    return min(keys, default=None)


@settings(max_examples=300, deadline=None)
@given(tied_instances(), st.sampled_from([None, 0, 1]))
def test_ties_follow_the_rule_like_brute_force(instance, subset_max):
    loss, cost, estimated, budget = instance
    best = brute_force(loss, cost, estimated, budget)
    kw = {} if subset_max is None else {"subset_max": subset_max}
    if best is None:
        with pytest.raises(InfeasibleBudget):
            BudgetSolver(loss, cost, estimated=estimated, **kw).solve(budget)
        return
    solution = BudgetSolver(loss, cost, estimated=estimated, **kw).solve(budget)
    assert solution.optimal
    assert tie_key(loss, cost, estimated, solution.chosen) == best


@settings(max_examples=100, deadline=None)
@given(tied_instances())
def test_plain_formulation_breaks_ties_the_same_way(instance):
    loss, cost, estimated, budget = instance
    best = brute_force(loss, cost, estimated, budget)
    if best is None:
        return
    solution = PlainSolver(loss, cost, estimated=estimated).solve(budget)
    assert tie_key(loss, cost, estimated, solution.chosen) == best


@settings(max_examples=100, deadline=None)
@given(tied_instances(), st.randoms(use_true_random=False))
def test_network_order_does_not_change_the_tie_break_key(instance, rnd):
    loss, cost, estimated, budget = instance
    if brute_force(loss, cost, estimated, budget) is None:
        return
    order = list(range(len(cost)))
    rnd.shuffle(order)
    a = BudgetSolver(loss, cost, estimated=estimated).solve(budget)
    b = BudgetSolver(loss[order], cost[order], estimated=estimated[order]).solve(budget)
    assert tie_key(loss, cost, estimated, a.chosen) == tie_key(
        loss[order], cost[order], estimated[order], b.chosen
    )


def test_a_tied_single_is_not_dominated_by_the_pair_that_contains_it():
    # Standley's setting 1: task d scores 0.1695 in the single d and in the pair d+n.
    nan = np.nan
    loss = np.array([[0.1695, nan], [0.1695, 0.2], [nan, 0.1]])
    cost = np.ones(3)
    assert not dominated(loss, cost).any()
    # The pair serving d alone beside n's own network ties with the single: fewer tasks wins.
    solution = BudgetSolver(loss, cost).solve(2)
    assert solution.chosen == (0, 2)
    # A measured network beats an estimated one with the same losses and cost.
    loss2 = np.array([[0.5, 0.5], [0.5, 0.5]])
    assert dominated(loss2, np.ones(2), np.array([True, False])).tolist() == [True, False]
    assert BudgetSolver(loss2, np.ones(2), estimated=np.array([True, False])).solve(1).chosen == (
        1,
    )


def dominated_by_definition(loss, cost, estimated):
    """Every ordered pair checked one by one (the rule in solver.dominated's docstring)."""
    defined = ~np.isnan(loss)
    n_tasks = defined.sum(axis=1)
    out = np.zeros(len(cost), dtype=bool)
    for a in range(len(cost)):
        on = defined[a]
        for b in range(len(cost)):
            if a == b or not defined[b][on].all() or cost[b] > cost[a]:
                continue
            la, lb = loss[a, on], loss[b, on]
            if not np.all(lb <= la):
                continue
            preferred = (estimated[b], n_tasks[b], b) < (estimated[a], n_tasks[a], a)
            equal = cost[b] == cost[a] and np.all(lb == la)
            if cost[b] < cost[a] or np.all(lb < la) or (equal and preferred):
                out[a] = True
    return out


@pytest.mark.parametrize("seed", range(6))
def test_dominance_on_large_networks_matches_its_definition(seed):
    # Networks of up to 12 tasks take the vectorised subset search (more than 6 tasks).
    rng = np.random.default_rng(seed)
    n_task, n_net = 12, 120
    loss = np.full((n_net, n_task), np.nan)
    for n in range(n_net):
        k = int(rng.integers(1, n_task + 1)) if n % 3 else int(rng.integers(7, n_task + 1))
        members = rng.choice(n_task, k, replace=False)
        loss[n, members] = rng.integers(1, 4, k) / 4
    cost = rng.choice([0.5, 1.0], n_net)
    estimated = rng.random(n_net) < 0.3
    expected = dominated_by_definition(loss, cost, estimated)
    assert expected.any()
    assert dominated(loss, cost, estimated).tolist() == expected.tolist()
