"""sweep.sizes: auto trains half-width single-task networks only where some configured budget
can deploy one; the bound it uses is the exact cheapest grouping holding one (brute force), and
the independent baseline says why it is infeasible instead of costing trainings."""

from __future__ import annotations

import itertools

import pandas as pd
import pyarrow as pa
import pytest

from pipeline.config import resolve_config
from pipeline.schema import METRICS, write_table
from pipeline.selection import run_selection
from pipeline.selection.candidates import SIZE_UNITS
from pipeline.strategies import resolve_strategy
from pipeline.sweep import half_deploy_cost, plan_networks, resolve_sizes

SYNTH = {"name": "synthetic", "rows": 300, "features": 8, "clusters": 2, "tasks_per_cluster": 2}


def cheapest_grouping_with_a_half(tasks: list[str], sweep: dict) -> float:
    """By brute force over every set of the planned networks: the least cost of a set that
    covers every task and holds a half-width network (inf if none)."""
    nets = plan_networks(tasks, {**sweep, "sizes": ["full", "half"]})
    best = float("inf")
    for k in range(1, len(nets) + 1):
        if SIZE_UNITS["half"] * k >= best:  # every network costs at least a half one
            break
        for chosen in itertools.combinations(nets, k):
            cost = sum(SIZE_UNITS[n.size] for n in chosen)
            if cost >= best or not any(n.size == "half" for n in chosen):
                continue
            if set().union(*(n.tasks for n in chosen)) == set(tasks):
                best = cost
    return best


@pytest.mark.parametrize(
    "sweep",
    [
        {"orders": [1], "all_in_one": False},
        {"orders": [1], "all_in_one": True},
        {"orders": [1, 2], "all_in_one": False},
        {"orders": [1, 3], "all_in_one": False},
        {"orders": [2], "all_in_one": False},
        {"orders": [1, 2, 3], "all_in_one": False},
    ],
)
@pytest.mark.parametrize("n_tasks", [1, 2, 3, 4, 5])
def test_the_bound_is_the_cheapest_grouping_holding_a_half(sweep: dict, n_tasks: int) -> None:
    tasks = [f"t{i}" for i in range(n_tasks)]
    sweep = {**sweep, "strategy": "exhaustive"}
    if max(sweep["orders"]) > n_tasks:
        pytest.skip("orders beyond the task count are refused")
    assert half_deploy_cost(n_tasks, sweep) == cheapest_grouping_with_a_half(tasks, sweep)


def test_estimating_strategies_bound_by_one_network_for_the_rest() -> None:
    # TAG's groups (or its all-in-one network) may hold every other task: 0.5 + 1.
    tag = {"orders": [1], "all_in_one": False, "strategy": "tag"}
    assert resolve_strategy({}, 617) == "gradtag" and half_deploy_cost(617, tag) == 1.5
    gradtag = {**tag, "strategy": "gradtag"}
    assert half_deploy_cost(617, gradtag) == 1.5
    assert resolve_sizes(617, {**tag, "sizes": "auto"}, [1.0, 1.48], 0.01) == ["full"]
    assert resolve_sizes(617, {**tag, "sizes": "auto"}, [1.0, 1.49], 0.01) == [
        "full",
        "half",
    ]
    # Listed sizes are kept as listed.
    assert resolve_sizes(617, {**tag, "sizes": ["half"]}, [1.0], 0.01) == ["half"]


def test_auto_is_the_default_and_resolved_in_the_config() -> None:
    config = resolve_config({"dataset": dict(SYNTH)}, check_data=False)
    assert config["sweep"]["sizes"] == ["full", "half"]  # budgets up to 5 >= 1.5
    alone = {"orders": [1], "all_in_one": False}
    cheap = resolve_config(
        {"dataset": dict(SYNTH), "sweep": alone, "selection": {"budgets": [1, 1.5]}},
        check_data=False,
    )
    # 4 tasks, singles only: a half needs 0.5 + 3 halves = 2 units; the budgets stop at 1.5.
    assert cheap["sweep"]["sizes"] == ["full"]
    nets = plan_networks(cheap["dataset"]["tasks"], cheap["sweep"])
    assert {n.size for n in nets} == {"full"} and len(nets) == 4


def test_listed_halves_no_budget_can_deploy_are_a_warning() -> None:
    said: list[str] = []
    resolve_config(
        {"dataset": dict(SYNTH), "sweep": {"sizes": ["full", "half"]},
         "selection": {"budgets": [1]}},
        check_data=False, warn=said.append,
    )  # fmt: skip
    assert said == [
        "config key sweep.sizes: half-width networks are listed but no budget can deploy one "
        "(a grouping holding one costs at least 1.5 units, the largest budget is 1): 4 "
        "trainings serve nothing; sweep.sizes: auto skips them"
    ]


def test_independent_baseline_says_why_without_half_networks(tmp_path) -> None:
    from test_selection_metrics import make_metrics

    path = tmp_path / "metrics.parquet"
    make_metrics(path)
    frame = pd.read_parquet(path)
    frame = frame[frame["size"] == "full"]
    write_table(pa.Table.from_pandas(frame, preserve_index=False), path, METRICS)
    run_selection(path, {"budgets": [2, 3], "random_samples": 20}, tmp_path)
    g = pd.read_parquet(tmp_path / "groupings.parquet")
    independent = g[g["selection_method"] == "independent"]
    at2, at3 = (independent[independent["budget"] == b] for b in (2.0, 3.0))
    assert set(at2["status"]) == {"infeasible"}
    assert set(at2["note"]) == {
        "infeasible at budget 2: full single-task networks for all 3 tasks cost 3; half-width "
        "ones were not trained (infeasible at these budgets)"
    }
    assert set(at3["status"]) == {"ok"}
