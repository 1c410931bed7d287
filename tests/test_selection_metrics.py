"""Candidates built by the DuckDB queries over a METRICS-schema file; the whole solve on it."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.schema import METRICS, check_file, write_table
from pipeline.selection import GROUPINGS, run_selection
from pipeline.selection.candidates import Candidates, build, query_metrics
from pipeline.selection.hoa import TooManyEstimates, higher_order_approximation
from pipeline.selection.scoring import score
from pipeline.selection.solving import Outcome, Settings, solve_candidates

TASKS = ["a", "b", "c"]
EPOCHS = 5
DIVERGED = "a+c@full"


def true_loss(
    tasks: tuple[str, ...], size: str, task: str, seed: int, split: str, epoch: int
) -> float:
    """A deterministic loss: pairs with 'b' help, half size hurts, training lowers it, seeds
    and splits shift it a little."""
    base = {"a": 0.5, "b": 0.3, "c": 0.4}[task]
    base *= 0.9 if ("b" in tasks and task != "b") else 1.0
    base *= 1.1 if size == "half" else 1.0
    base += 0.01 * seed + (0.005 if split == "test" else 0.0)
    return base * (1 + 1.0 / epoch)


def networks():
    for task in TASKS:
        yield (task,), "half", 0.5
        yield (task,), "full", 1.0
    for k in (2, 3):
        for subset in itertools.combinations(TASKS, k):
            yield subset, "full", 1.0 + 0.0004 * (k - 1)


def make_metrics(path) -> None:
    rows = []
    for (tasks, size, cost), seed in itertools.product(networks(), (0, 1)):
        name = "+".join(tasks) + f"@{size}"
        diverged = name == DIVERGED and seed == 1
        last = 3 if diverged else EPOCHS
        for task, split, epoch in itertools.product(
            tasks, ("train", "val", "test"), range(1, last + 1)
        ):
            value = true_loss(tasks, size, task, seed, split, epoch)
            rows.append(
                dict(
                    dataset="toy",
                    network=name,
                    tasks=list(tasks),
                    n_tasks=len(tasks),
                    size=size,
                    width=64 if size == "full" else 45,
                    cost=cost,
                    macs=1000,
                    architecture="mlp",
                    weighting="equal",
                    seed=seed,
                    task=task,
                    task_type="regression",
                    split=split,
                    epoch=epoch,
                    metric="loss",
                    value=float("nan") if diverged and epoch == last else value,
                    n_labelled=10,
                    status="diverged" if diverged else "ok",
                    diverged_epoch=last if diverged else None,
                    epochs=EPOCHS,
                    wall_time_s=0.1 * epoch,
                    device="cpu",
                    config_hash=name,
                    versions="{}",
                )
            )
    write_table(pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False), path, METRICS)


@pytest.fixture(scope="module")
def metrics_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("metrics") / "metrics.parquet"
    make_metrics(path)
    return path


def test_candidates_from_duckdb(metrics_path):
    frames = query_metrics(metrics_path, esa_fraction=0.2)
    c = frames.candidates
    # The diverged network is excluded (both seeds), and listed as such.
    assert DIVERGED not in set(c["network"])
    assert frames.excluded["network"].tolist() == [DIVERGED]
    assert list(frames.excluded["diverged_seeds"].iloc[0]) == [1]
    row = c[(c["network"] == "a+b@full") & (c["task"] == "a")].iloc[0]
    seeds = [true_loss(("a", "b"), "full", "a", s, "val", EPOCHS) for s in (0, 1)]
    assert row["n_seeds"] == 2
    assert row["val_final"] == pytest.approx(np.mean(seeds))
    assert row["val_final_std"] == pytest.approx(np.std(seeds, ddof=1))
    # Losses fall every epoch, so the best-val epoch is the last one.
    assert row["val_best"] == pytest.approx(row["val_final"])
    # ESA epoch: round(0.2 * 5) = 1.
    early = np.mean([true_loss(("a", "b"), "full", "a", s, "val", 1) for s in (0, 1)])
    assert row["val_early"] == pytest.approx(early)
    assert row["test_final"] == pytest.approx(
        np.mean([true_loss(("a", "b"), "full", "a", s, "test", EPOCHS) for s in (0, 1)])
    )
    # Per-seed test losses for the spread.
    s = frames.seeds
    assert len(s[(s["network"] == "a+b@full") & (s["task"] == "a")]) == 2
    # Restricting tasks keeps networks that serve them.
    only = query_metrics(metrics_path, 0.2, tasks=["a"]).candidates
    assert set(only["task"]) == {"a"} and "a+b+c@full" in set(only["network"])


def test_hoa_construction(metrics_path):
    (cand,) = build(query_metrics(metrics_path, 0.2))
    hoa = higher_order_approximation(cand, max_order=3)
    triple = hoa.networks.index("a+b+c@full")
    pair = {name: cand.networks.index(name) for name in ("a+b@full", "b+c@full")}
    a, b, c = (cand.tasks.index(t) for t in TASKS)
    # a's estimate in {a, b, c}: the pairs a+b and a+c, but a+c diverged, so a+b alone.
    assert hoa.val[triple, a] == pytest.approx(cand.val[pair["a+b@full"], a])
    # b's estimate: the mean of b in a+b and b+c (a+c's divergence does not matter to b).
    assert hoa.val[triple, b] == pytest.approx(
        (cand.val[pair["a+b@full"], b] + cand.val[pair["b+c@full"], b]) / 2
    )
    # The real network's test loss is kept; nothing untrained was added (the triple exists).
    assert hoa.test[triple, c] == cand.test[triple, c]
    assert hoa.trained.all() and len(hoa.networks) == len(cand.networks)


def test_hoa_adds_untrained_task_sets():
    # Singles and pairs only: HOA estimates the triple from its three pairs.
    sets = [("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c")]
    members = np.array([[t in s for t in TASKS] for s in sets])
    rng = np.random.default_rng(0)
    val = np.where(members, rng.uniform(0.2, 0.6, members.shape), np.nan)
    test = val + 0.01
    cand = Candidates(
        architecture="mlp",
        weighting="equal",
        tasks=TASKS,
        networks=["+".join(s) + "@full" for s in sets],
        size=["full"] * 6,
        cost=np.array([1.0, 1.0, 1.0, 1.0004, 1.0004, 1.0004]),
        members=members,
        val=val,
        test=test,
        early=val.copy(),
        test_seeds=test[:, :, None],
        seeds=[0],
        trained=np.ones(6, dtype=bool),
    )
    hoa = higher_order_approximation(cand, max_order=3)
    assert hoa.networks[6:] == ["a+b+c@full"] and not hoa.trained[6]
    # One head more per task: the cost line through singles and pairs.
    assert hoa.cost[6] == pytest.approx(1.0008)
    ab, ac, bc = 3, 4, 5
    assert hoa.val[6].tolist() == pytest.approx(
        [
            (val[ab, 0] + val[ac, 0]) / 2,
            (val[ab, 1] + val[bc, 1]) / 2,
            (val[ac, 2] + val[bc, 2]) / 2,
        ]
    )
    # Never trained: its test loss is the same estimate on test.
    assert hoa.test[6, 0] == pytest.approx((test[ab, 0] + test[ac, 0]) / 2)
    assert hoa.test_seeds[6, 0, 0] == pytest.approx(hoa.test[6, 0])
    # With max_order 2 nothing is added.
    assert len(higher_order_approximation(cand, max_order=2).networks) == 6
    # Past its limit HOA is skipped with the key to raise, in the summary's words.
    assert len(higher_order_approximation(cand, 3, max_networks=1).networks) == 7
    with pytest.raises(TooManyEstimates, match="selection.hoa_max_networks"):
        higher_order_approximation(cand, 3, max_networks=0)
    skipped = solve_candidates(cand, Settings(budgets=(3.0,), hoa_max_networks=0))
    (hoa_outcome,) = [o for o in skipped if o.method == "hoa"]
    assert hoa_outcome.status == "unavailable" and "HOA skipped" in hoa_outcome.note
    assert any(o.method == "optimal" and o.status == "ok" for o in skipped)

    # Choosing the estimated triple: its per-task test losses stay (flagged), but no total
    # mixes them with measured ones; a choice of trained networks keeps its total.
    estimated = score(Outcome("hoa", 1, "ok", cand=hoa, chosen=(6,), selection=hoa.val), hoa)
    assert estimated.test_estimated and np.isnan(estimated.test_total)
    assert np.isfinite(estimated.test).all()
    trained = score(Outcome("hoa", 2, "ok", cand=hoa, chosen=(3, 2), selection=hoa.val), hoa)
    assert not trained.test_estimated
    assert trained.test_total == pytest.approx(test[ab, 0] + test[ab, 1] + test[2, 2])


def test_run_selection_end_to_end(metrics_path, tmp_path):
    run_selection(
        metrics_path,
        {"budgets": [0.4, 1, 2, 3], "random_samples": 50},
        tmp_path,
        None,
        tmp_path / "select.log",
    )
    check_file(tmp_path / "groupings.parquet", GROUPINGS)
    g = pq.read_table(tmp_path / "groupings.parquet").to_pandas()
    infeasible = g[(g["budget"] == 0.4) & (g["selection_method"] == "optimal")]
    assert infeasible["status"].tolist() == ["infeasible"]
    assert "below the cheapest cover" in infeasible["note"].iloc[0]
    ok = g[(g["status"] == "ok") & (g["selection_method"] == "optimal")]
    assert set(ok["budget"]) == {1, 2, 3}
    # Two seeds: the chosen set's spread over seeds is reported.
    assert ok["test_total_std"].notna().all()
    assert not any(DIVERGED in nets for nets in g["networks"].dropna())
    summary = (tmp_path / "summary.md").read_text()
    assert DIVERGED in summary and "seed noise" in summary
    assert (tmp_path / "budget_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "optimal test total" in (tmp_path / "select.log").read_text()


def test_normalised_objective(metrics_path, tmp_path):
    run_selection(
        metrics_path, {"budgets": [2], "objective": "normalised", "random_samples": 20}, tmp_path
    )
    g = pd.read_parquet(tmp_path / "groupings.parquet")
    assert set(g["objective"]) == {"normalised"}
    independent = g[(g["selection_method"] == "independent") & (g["budget"] == 2)]

    # All full-size singles do not fit 2; all halves do. Each task's loss is divided by its
    # full-size single-task loss (means over seeds).
    def mean(size, task):
        return np.mean([true_loss((task,), size, task, s, "val", EPOCHS) for s in (0, 1)])

    expected = [mean("half", t) / mean("full", t) for t in TASKS]
    assert independent.sort_values("task")["val_loss"].tolist() == pytest.approx(expected)
    optimal = g[(g["selection_method"] == "optimal") & (g["budget"] == 2)]
    assert optimal["val_total"].iloc[0] <= sum(expected) + 1e-12


@pytest.mark.parametrize("cost, fits", [("units", True), ("macs", False)])
def test_cost_model_decides_whether_the_all_task_network_fits_budget_1(
    metrics_path, tmp_path, cost, fits
):
    # The all-task network's extra heads make it cost 1.0008 relative to a single: one unit
    # under Standley's units, more than 1 under measured costs (no slack here).
    run_selection(
        metrics_path,
        {"budgets": [1, 2], "random_samples": 20, "cost": cost, "cost_tolerance": 0},
        tmp_path,
    )
    g = pq.read_table(tmp_path / "groupings.parquet").to_pandas()
    status = (
        g.loc[(g["selection_method"] == "all_in_one") & (g["budget"] == 1), "status"]
        .unique()
        .tolist()
    )
    assert status == (["ok"] if fits else ["infeasible"])
    unit = "Standley's units" if cost == "units" else "each architecture's own"
    assert unit in (tmp_path / "summary.md").read_text()


def test_summary_says_a_reason_shared_by_budgets_once():
    from pipeline.selection.outputs import _grouped_notes

    outcomes = [Outcome("hoa", b, "unavailable", "HOA skipped") for b in (3.0, 1.0, 2.5)]
    outcomes.append(Outcome("random", 1.0, "infeasible", "no draw covered every task"))
    assert _grouped_notes(outcomes) == [
        "- hoa at 1, 2.5, 3: HOA skipped",
        "- random at 1: no draw covered every task",
    ]
