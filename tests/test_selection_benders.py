"""The Benders formulation (pipeline/selection/benders.py) gives the same answers as brute force
and as the served-subset model: optimal objective and the same tie-break, through each of its
paths (SubsetModel over the networks reduced-cost fixing keeps, the Benders MIP loop, the
restricted first MIP), and it ends with a labelled answer when time runs out."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.selection import benders
from pipeline.selection.instances import large_networks, planted
from pipeline.selection.scoring import total
from pipeline.selection.solver import BudgetSolver, InfeasibleBudget, NoIncumbent

# Each path of CutModel.run / tie_break, forced by its two thresholds.
PATHS = {
    "compact": {},  # few networks survive the fixing: SubsetModel solves them
    "loop": {"COMPACT_MAX_PAIRS": -1},  # the Benders MIP loop and its tie-break
    "restricted": {"COMPACT_MAX_PAIRS": -1, "RESTRICTED_NETWORKS": 2},
}


@pytest.fixture(params=sorted(PATHS))
def path(request, monkeypatch):
    for name, value in PATHS[request.param].items():
        monkeypatch.setattr(benders, name, value)
    return request.param


def random_table(seed: int, n_task: int, n_net: int, quarters: bool):
    """Networks of 1..n_task tasks; losses in quarters (ties everywhere) or continuous."""
    rng = np.random.default_rng(seed)
    loss = np.full((n_net, n_task), np.nan)
    for n in range(n_net):
        members = rng.choice(n_task, int(rng.integers(1, n_task + 1)), replace=False)
        if quarters:
            loss[n, members] = rng.integers(1, 5, members.size) / 4
        else:
            loss[n, members] = rng.uniform(0.2, 1.0, members.size)
    # 1.0004: costs without a common unit, so cost is a tie-break pass of its own.
    cost = rng.choice([0.5, 1.0, 1.0004, 1.5], n_net)
    estimated = rng.random(n_net) < 0.3
    return loss, cost, estimated


def tie_key(loss, cost, estimated, subset):
    s = list(subset)
    return (
        round(total(loss, s), 9),
        len(s),
        float(cost[s].sum()),
        int(estimated[s].sum()),
        int((~np.isnan(loss[s])).sum()),
    )


def brute_force(loss, cost, estimated, limit):
    covers = ~np.isnan(loss)
    return min(
        (
            tie_key(loss, cost, estimated, s)
            for k in range(1, len(cost) + 1)
            for s in itertools.combinations(range(len(cost)), k)
            if cost[list(s)].sum() <= limit and covers[list(s)].any(axis=0).all()
        ),
        default=None,
    )


# The fixture only sets two module constants, the same for every input.
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.integers(0, 2**31 - 1),
    st.integers(1, 5),
    st.integers(1, 9),
    st.booleans(),
    st.sampled_from([1.0, 1.5, 2.0, 3.0]),
)
def test_every_path_matches_brute_force_and_the_tie_rule(
    path, seed, n_task, n_net, quarters, budget
):
    loss, cost, estimated = random_table(seed, n_task, n_net, quarters)
    best = brute_force(loss, cost, estimated, budget)
    if best is None:
        with pytest.raises(InfeasibleBudget):
            BudgetSolver(loss, cost, estimated=estimated, formulation="benders").solve(budget)
        return
    solution = BudgetSolver(loss, cost, estimated=estimated, formulation="benders").solve(budget)
    assert solution.optimal
    assert tie_key(loss, cost, estimated, solution.chosen) == best


@pytest.mark.parametrize("seed", [0, 1])
def test_larger_tables_match_the_served_subset_model(path, seed):
    # 8 tasks, 120 networks of 1-8 tasks: past brute force, so against the other formulation;
    # budgets solved in order share the cuts, the LP and the warm starts.
    loss, cost, estimated = random_table(seed, 8, 120, quarters=False)
    budgets = [1.0, 2.0, 3.0, 4.5, 6.0]
    mine = BudgetSolver(loss, cost, estimated=estimated, formulation="benders").solve_all(budgets)
    theirs = BudgetSolver(loss, cost, estimated=estimated, formulation="subsets").solve_all(budgets)
    for a, b in zip(mine, theirs):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.optimal and b.optimal
            assert a.objective == pytest.approx(b.objective, rel=1e-9)
            assert tie_key(loss, cost, estimated, a.chosen) == tie_key(
                loss, cost, estimated, b.chosen
            )


def test_auto_takes_benders_for_large_networks_only():
    loss, cost = large_networks(n_task=12, n_large=1000, sizes=(6, 10))
    assert BudgetSolver(loss, cost).formulation == "benders"
    triples, triple_cost = planted(12, (2, 3))[:2]
    assert BudgetSolver(triples, triple_cost).formulation == "subsets"
    with pytest.raises(ValueError, match="formulation"):
        BudgetSolver(triples, triple_cost, formulation="lagrange")


def test_issue_shape_is_proven_and_equals_the_served_subset_model():
    # Issue 20's shape, smaller: 14 tasks, singles, pairs, 600 sets of 5-9 tasks.
    loss, cost = large_networks(n_task=14, n_large=600, sizes=(5, 9), seed=3)
    budgets = [1, 2, 3, 5]
    mine = BudgetSolver(loss, cost, formulation="benders").solve_all(budgets)
    theirs = BudgetSolver(loss, cost, formulation="subsets").solve_all(budgets)
    for a, b in zip(mine, theirs):
        assert a.optimal and b.optimal
        assert a.objective == pytest.approx(b.objective, rel=1e-9)
        assert a.chosen == b.chosen


@pytest.mark.parametrize("seconds", [1e-3, 0.05, 0.3])
def test_a_time_limit_gives_a_labelled_answer_or_says_none_was_found(path, seconds):
    loss, cost = large_networks(n_task=14, n_large=600, sizes=(5, 9), seed=4)
    solver = BudgetSolver(loss, cost, formulation="benders", time_limit=seconds, warm_start=False)
    for budget in (3, 5):
        try:
            solution = solver.solve(budget)
        except NoIncumbent as err:
            assert "time limit" in str(err)
            continue
        assert solution.gap >= 0.0
        assert solution.objective == pytest.approx(total(loss, list(solution.chosen)))
        assert cost[list(solution.chosen)].sum() <= budget + 1e-9
