"""The solver's speed levers keep it exact: dominance, warm starts, the cover bound and the
integral budget each give the plain formulation's optimum; the time limit returns an incumbent
with an honest gap; HiGHS stays quiet; the cost models add up."""

from __future__ import annotations

import os
import re
import stat
import time

import numpy as np
import pandas as pd
import pytest

from pipeline.io import atomic_write
from pipeline.selection.candidates import cost_model
from pipeline.selection.instances import planted, spread_budgets
from pipeline.selection.scoring import total
from pipeline.selection.solver import (
    BudgetSolver,
    InfeasibleBudget,
    PlainSolver,
    cheapest_cover_set,
    dominated,
    solve_budgets,
)


def objectives(solver, budgets):
    return [None if s is None else s.objective for s in solver.solve_all(budgets)]


@pytest.mark.parametrize(
    "n_task, orders, seed",
    [(12, (2, 3), 0), (12, (2, 3), 1), (30, (2,), 0)],
)
def test_fast_equals_plain_on_planted_instances(n_task, orders, seed):
    loss, cost = planted(n_task, orders, seed=seed)
    budgets = spread_budgets(n_task, max(orders)) + [n_task / max(orders) - 1]
    plain = objectives(PlainSolver(loss, cost), budgets)
    fast = BudgetSolver(loss, cost).solve_all(budgets)
    assert [None if s is None else s.objective for s in fast] == pytest.approx(plain, abs=1e-9)
    for s in fast:
        if s is not None:
            assert s.gap == 0.0 and s.cost <= s.budget + 1e-9
            assert total(loss, s.chosen) == pytest.approx(s.objective)


@pytest.mark.parametrize(
    "levers",
    [
        {"reduce": True, "warm_start": False, "integral_budget": False},
        {"reduce": False, "warm_start": True, "integral_budget": False},
        {"reduce": False, "warm_start": False, "integral_budget": True},
        {"reduce": False, "warm_start": False, "integral_budget": False, "subsets": True},
        {"reduce": True, "warm_start": True, "integral_budget": True, "subsets": False},
    ],
    ids=["dominance", "warm_start", "integral_budget", "subsets", "all_but_subsets"],
)
def test_each_lever_alone_keeps_the_optimum(levers):
    loss, cost = planted(12, (2, 3), seed=2)
    budgets = spread_budgets(12, 3)
    plain = objectives(PlainSolver(loss, cost), budgets)
    assert objectives(BudgetSolver(loss, cost, **levers), budgets) == pytest.approx(plain)


def test_dominance_keeps_one_of_equals_and_drops_only_dominated():
    nan = np.nan
    loss = np.array(
        [
            [0.5, nan, nan],  # dominated by the pair below (cheaper-or-equal, better on a)
            [0.4, 0.6, nan],
            [0.4, 0.6, nan],  # equal to the previous: exactly one survives
            [nan, nan, 0.3],
            [0.3, nan, nan],  # not dominated: better on a than any superset
        ]
    )
    cost = np.array([1.0, 1.0, 1.0, 0.5, 1.0])
    assert dominated(loss, cost).tolist() == [True, False, True, False, False]
    # A dearer superset does not dominate.
    assert not dominated(loss, np.array([0.5, 1.0, 1.0, 0.5, 1.0]))[0]


def test_warm_start_is_used_and_budget_order_does_not_matter():
    loss, cost = planted(12, (2, 3), seed=3)
    budgets = spread_budgets(12, 3)
    forward = solve_budgets(loss, cost, budgets)
    backward = solve_budgets(loss, cost, budgets[::-1])[::-1]
    assert [s.objective for s in forward] == pytest.approx([s.objective for s in backward])
    solver = BudgetSolver(loss, cost)
    solver.solve(budgets[3])
    # The earlier optimum fits a larger budget: it is the start handed to HiGHS.
    start = solver._start(budgets[5])
    assert start is not None and start.sum() >= 1


def test_warm_start_is_a_feasible_mip_start_for_both_blocks(capfd):
    # Triples and pairs as served-subset columns, a 12-task network as a facility block.
    loss, cost = planted(12, (2, 3), seed=4)
    everything = np.nanmin(loss, axis=0) * 1.03
    loss, cost = np.vstack([loss, everything]), np.r_[cost, 1.0]
    solver = BudgetSolver(loss, cost, verbose=True)
    first = solver.solve(4.0)
    capfd.readouterr()
    second = solver.solve(6.0)
    out = capfd.readouterr().out
    # HiGHS repairs an infeasible start into some other solution: the start's objective must
    # be the previous optimum's, column for column.
    start = re.search(r"MIP start solution is feasible: objective value is ([0-9.e+-]+)", out)
    assert start is not None, out[-2000:]
    assert float(start.group(1)) == pytest.approx(first.objective, rel=1e-9)
    assert second.objective <= first.objective + 1e-12
    assert second.objective == pytest.approx(PlainSolver(loss, cost).solve(6.0).objective)


def test_infeasible_budgets_come_from_the_cover_bound_without_a_mip():
    loss, cost = planted(50, (2, 3), seed=0)
    start = time.perf_counter()
    solver = BudgetSolver(loss, cost)
    assert solver.cover.lower == solver.cover.upper == 17.0
    with pytest.raises(InfeasibleBudget, match="cheapest"):
        solver.solve(16.5)
    assert time.perf_counter() - start < 10  # building included; the answer itself is instant
    cover = cheapest_cover_set(loss[:300], cost[:300])
    assert cover.lower <= cover.upper


def test_time_limit_returns_incumbent_with_gap():
    loss, cost = planted(15, (2, 3), seed=0)
    exact = PlainSolver(loss, cost).solve(5.0).objective
    anytime = BudgetSolver(loss, cost, time_limit=0.01).solve(5.0)
    assert anytime.objective >= exact - 1e-9
    assert 0.0 <= anytime.gap
    assert anytime.bound <= exact + 1e-9
    if anytime.gap == 0.0:
        assert anytime.objective == pytest.approx(exact)
    else:
        assert not anytime.optimal


def test_solver_prints_nothing(capfd):
    loss, cost = planted(6, (2,), seed=0)
    BudgetSolver(loss, cost).solve(3.0)
    PlainSolver(loss, cost).solve(3.0)
    out, err = capfd.readouterr()
    assert "HiGHS" not in out + err and out + err == ""


def test_units_cost_model_counts_sizes_not_heads():
    frame = pd.DataFrame(
        {
            "architecture": ["hard_sharing"] * 4 + ["mtan"],
            "weighting": ["equal"] * 5,
            "network": ["a@half", "a@full", "a+b@full", "a+b@full", "a@full"],
            "size": ["half", "full", "full", "full", "full"],
            "cost": [0.5013, 1.0, 1.0095, 1.0095, 1.0],
            "macs": [501, 1000, 1009, 1009, 3210],
            "task": ["a", "a", "a", "b", "a"],
        }
    )
    units, unit = cost_model(frame, "units")
    assert units.tolist() == [0.5, 1.0, 1.0, 1.0, 1.0] and "units" in unit
    assert 12 * units[0] <= 6.0  # twelve half-width singles fit budget 6 exactly
    macs, unit = cost_model(frame, "macs")
    # One unit across methods: the MTAN single costs its multiply-adds over hard sharing's.
    assert macs.tolist() == pytest.approx([0.501, 1.0, 1.009, 1.009, 3.21])
    assert "hard-sharing" in unit


def test_atomic_write_umask_permissions_and_stale_temp_removed(tmp_path):
    target = tmp_path / "out.txt"
    stale = tmp_path / ".out.txt.abc123.tmp"
    stale.write_text("left by a killed write")
    old = os.umask(0o027)
    try:
        with atomic_write(target) as tmp:
            tmp.write_text("done")
    finally:
        os.umask(old)
    assert target.read_text() == "done"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_run_external_reports_gap_unit_and_time_limit(tmp_path):
    from pipeline.selection import Settings, run_external

    loss, cost = planted(6, (2, 3), seed=0)
    tasks = [f"t{i}" for i in range(6)]
    rows = []
    for row, c in zip(loss, cost):
        members = np.flatnonzero(~np.isnan(row))
        size = "half" if c == 0.5 else "full"
        name = "+".join(tasks[i] for i in members) + "@" + size
        for i in members:
            rows.append((name, c, size, tasks[i], row[i], row[i] * 1.01))
    path = tmp_path / "results.csv"
    pd.DataFrame(rows, columns=["network", "cost", "size", "task", "val_loss", "test_loss"]).to_csv(
        path, index=False
    )
    config = {"budgets": [1.5, 2, 3, 6], "time_limit_s": 30, "random_samples": 50}
    assert Settings.from_config(config).time_limit_s == 30
    with pytest.raises(ValueError, match="time_limit_s"):
        Settings.from_config({"time_limit_s": 0})
    with pytest.raises(ValueError, match="selection.cost"):
        Settings.from_config({"cost": "flops"})
    run_external(path, config, tmp_path / "out")
    frame = pd.read_parquet(tmp_path / "out" / "groupings.parquet")
    optimal = frame[(frame["selection_method"] == "optimal") & (frame["status"] == "ok")]
    assert set(optimal["budget"]) == {2, 3, 6} and (optimal["gap"] == 0).all()
    assert frame.loc[frame["selection_method"] == "random", "gap"].isna().all()
    infeasible = frame[(frame["selection_method"] == "optimal") & (frame["budget"] == 1.5)]
    assert infeasible["status"].tolist() == ["infeasible"]
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "Standley's units" in summary and "proven optimal" in summary


def test_summary_lists_large_sets_compactly() -> None:
    from pipeline.selection.outputs import _listed

    names = [f"assay {i}" for i in range(617)]
    line = _listed(names, 30, "tasks")
    assert line.startswith("assay 0, assay 1") and line.endswith("… +587 more tasks")
    assert (
        "assay 30," not in line and _listed(names[:3], 30, "tasks") == "assay 0, assay 1, assay 2"
    )


def test_a_time_limited_answer_is_labelled_with_its_gap(tmp_path):
    from pipeline.selection import Settings, run_external
    from pipeline.selection.solving import TIME_LIMIT_S

    # Finite by default, per method; a mapping overrides some methods, a number all of them.
    assert all(v is not None and v > 0 for v in Settings().time_limit_s.values())
    partial = Settings.from_config({"time_limit_s": {"hoa": 3}})
    assert partial.time_limit("hoa") == 3
    assert partial.time_limit("optimal") == TIME_LIMIT_S["optimal"]
    assert Settings.from_config({"time_limit_s": None}).time_limit("optimal") is None
    with pytest.raises(ValueError, match="unknown method"):
        Settings.from_config({"time_limit_s": {"os": 3}})
    with pytest.raises(ValueError, match="positive seconds"):
        Settings.from_config({"time_limit_s": {"esa": -1}})

    loss, cost = planted(12, (2, 3), seed=0)
    tasks = [f"t{i}" for i in range(12)]
    rows = []
    for row, c in zip(loss, cost):
        members = np.flatnonzero(~np.isnan(row))
        name = "+".join(tasks[i] for i in members) + ("@half" if c == 0.5 else "@full")
        rows += [(name, c, tasks[i], row[i], row[i] * 1.01) for i in members]
    path = tmp_path / "results.csv"
    pd.DataFrame(rows, columns=["network", "cost", "task", "val_loss", "test_loss"]).to_csv(
        path, index=False
    )
    # A millisecond stops OS before it proves anything (the cover is its incumbent); ESA has no
    # early losses; HOA keeps its default and proves every budget.
    config = {"budgets": [4, 6], "time_limit_s": {"optimal": 0.001}, "random_samples": 20}
    run_external(path, config, tmp_path / "out")
    frame = pd.read_parquet(tmp_path / "out" / "groupings.parquet")
    first = frame.groupby(["selection_method", "budget"]).first()
    stopped = first.loc["optimal"]
    assert (stopped["status"] == "ok").all() and (stopped["gap"] > 0).all()
    assert stopped["note"].str.startswith("not proven optimal").all()
    assert (first.loc["hoa", "gap"] == 0).all()
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "### Proven optimality gap" in summary
    for gap in stopped["gap"]:
        shown = f"{gap:.2%}" if np.isfinite(gap) else "no bound"
        assert f"| **{shown}** (stopped: 0.001 s for all budgets) |" in summary
    assert "**Not proven optimal**" in summary
