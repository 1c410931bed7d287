"""Losses and metrics over labelled cells only, and one network's training on tiny synthetic data:
its METRICS rows, determinism, missing labels, divergence, and the Snakemake job body."""

from __future__ import annotations

import json
import math
from itertools import product
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch.nn import functional as F

from pipeline.config import resolve_config
from pipeline.datasets import load_dataset
from pipeline.jobs import run_snakemake_job
from pipeline.metrics import (
    METRIC_OF,
    masked_binary_losses,
    masked_loss,
    positive_rank_sum,
    roc_auc,
    task_metric,
)
from pipeline.schema import METRICS, SPEC_METADATA, SPLITS, check_file
from pipeline.split import make_split, write_split
from pipeline.sweep import network_spec
from pipeline.training import (
    _Inputs,
    _vector_score,
    rows_to_table,
    score_outputs,
    train_network,
)

CPU = torch.device("cpu")

# ---------------------------------------------------------------------------- masked loss


def _with_missing(target: torch.Tensor, missing: list[int]) -> torch.Tensor:
    target = target.clone()
    target[missing] = float("nan")
    return target


MISSING = [1, 4, 5, 9]


def test_masked_binary_loss_equals_loss_on_labelled_rows() -> None:
    g = torch.Generator().manual_seed(0)
    out = torch.randn(12, 1, generator=g, requires_grad=True)
    y = (torch.rand(12, generator=g) > 0.5).float()
    target = _with_missing(y, MISSING)
    keep = torch.tensor([i not in MISSING for i in range(12)])
    loss = masked_loss(out, target, "binary")
    expected = F.binary_cross_entropy_with_logits(out[keep, 0], y[keep])
    torch.testing.assert_close(loss, expected)
    loss.backward()
    # Missing rows get exactly no gradient (and no NaN).
    assert torch.all(out.grad[~keep] == 0)
    assert torch.isfinite(out.grad).all() and torch.all(out.grad[keep] != 0)


def test_masked_multiclass_loss_equals_loss_on_labelled_rows() -> None:
    g = torch.Generator().manual_seed(1)
    out = torch.randn(12, 4, generator=g)
    y = torch.randint(0, 4, (12,), generator=g).float()
    target = _with_missing(y, MISSING)
    keep = torch.tensor([i not in MISSING for i in range(12)])
    expected = F.cross_entropy(out[keep], y[keep].long())
    torch.testing.assert_close(masked_loss(out, target, "multiclass"), expected)


def test_masked_regression_loss_equals_loss_on_labelled_rows() -> None:
    g = torch.Generator().manual_seed(2)
    out = torch.randn(12, 1, generator=g)
    y = torch.randn(12, generator=g) * 3
    target = _with_missing(y, MISSING)
    keep = torch.tensor([i not in MISSING for i in range(12)])
    expected = F.mse_loss(out[keep, 0], y[keep])
    torch.testing.assert_close(masked_loss(out, target, "regression"), expected)
    # Missing labels are not zeros: filling them with 0 would change the loss.
    assert not torch.isclose(masked_loss(out, torch.nan_to_num(target), "regression"), expected)


def test_fused_binary_losses_equal_per_task_masked_losses_and_gradients() -> None:
    """The training loop's fused loss over all binary tasks is masked_loss, task by task,
    in value and gradient, including a task with no label in the batch."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(16, 3, generator=g, requires_grad=True)
    target = (torch.rand(16, 3, generator=g) > 0.5).float()
    target[torch.rand(16, 3, generator=g) < 0.3] = float("nan")
    target[:, 2] = float("nan")  # no labels at all for task 2
    labelled = ~torch.isnan(target)
    fused = masked_binary_losses(logits, torch.where(labelled, target, 0.0), labelled.float())
    per_task = torch.stack(
        [masked_loss(logits[:, j : j + 1], target[:, j], "binary") for j in range(3)]
    )
    torch.testing.assert_close(fused, per_task)
    assert float(fused[2].detach()) == 0.0 and float(fused[0].detach()) > 0.0
    (grad_fused,) = torch.autograd.grad(fused.sum(), logits)
    (grad_per_task,) = torch.autograd.grad(per_task.sum(), logits)
    torch.testing.assert_close(grad_fused, grad_per_task)
    assert torch.all(grad_fused[:, 2] == 0) and torch.all(grad_fused[~labelled] == 0)


def test_masked_loss_with_no_labels_is_zero_and_keeps_the_graph() -> None:
    out = torch.randn(5, 1, requires_grad=True)
    loss = masked_loss(out, torch.full((5,), float("nan")), "binary")
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.all(out.grad == 0)


# --------------------------------------------------------------------------------- ROC-AUC


def brute_force_auc(y: np.ndarray, score: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting half: every pair counted."""
    pos, neg = score[y == 1], score[y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_equals_pair_counting_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60).astype(float)
    score = rng.integers(0, 6, 60).astype(float)  # few distinct scores: many ties
    assert roc_auc(y, score) == pytest.approx(brute_force_auc(y, score), abs=1e-12)


def test_roc_auc_extremes() -> None:
    y = np.array([0, 0, 1, 1, 0, 1.0])
    assert roc_auc(y, y * 2 - 1) == 1.0
    assert roc_auc(y, 1 - y) == 0.0
    assert roc_auc(y, np.zeros(6)) == 0.5  # all tied


def test_roc_auc_is_nan_with_one_class() -> None:
    assert math.isnan(roc_auc(np.ones(5), np.arange(5.0)))
    assert math.isnan(roc_auc(np.zeros(5), np.arange(5.0)))


@pytest.mark.parametrize("seed", range(4))
def test_positive_rank_sum_is_rankdata_bit_for_bit(seed: int) -> None:
    from scipy.stats import rankdata

    rng = np.random.default_rng(seed)
    for rows in (1, 2, 17, 1000):
        # Few distinct scores (long runs of ties) and continuous ones.
        for score in (rng.integers(0, 4, rows).astype(float), rng.standard_normal(rows)):
            positives = rng.random(rows) < 0.3
            expected = float(rankdata(score)[positives].sum())
            assert positive_rank_sum(score, positives) == expected


def test_roc_auc_is_nan_with_a_nan_score() -> None:
    assert math.isnan(roc_auc(np.array([0.0, 1.0, 1.0]), np.array([0.1, np.nan, 0.3])))


def test_task_metric_skips_missing_labels() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 40).astype(float)
    score = rng.standard_normal(40)
    target = y.copy()
    target[:10] = np.nan
    got = task_metric(score[:, None], target, "binary")
    assert got == pytest.approx(brute_force_auc(y[10:], score[10:]))
    # Regression: RMSE over labelled rows, in original units (scale).
    out = rng.standard_normal((40, 1))
    expected = np.sqrt(np.mean((out[10:, 0] - target[10:]) ** 2)) * 2.5
    assert task_metric(out, target, "regression", scale=2.5) == pytest.approx(expected)
    # Multiclass: accuracy of the argmax over labelled rows.
    logits = np.array([[2.0, 0.0, 1.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0], [1.0, 0.0, 0.0]])
    assert task_metric(logits, np.array([0.0, 2.0, 2.0, np.nan]), "multiclass") == pytest.approx(
        2 / 3
    )
    assert math.isnan(task_metric(out, np.full(40, np.nan), "regression"))


# ----------------------------------------------------------------------- evaluation scores


def _scores_task_by_task(outputs, inputs, types) -> dict:
    """What score_outputs gave before its shorter path: every task on its own."""
    scores = {}
    for split in SPLITS:
        target = inputs.y[inputs.rows[split]]
        for j, kind in enumerate(types):
            out = torch.cat([chunk[j] for chunk in outputs[split]])
            scores[(split, j)] = _vector_score(out, target[:, j], kind, inputs.scale[j])
    return scores


def _bits(scores: dict) -> dict:
    return {key: np.array(value, dtype=np.float64).tobytes() for key, value in scores.items()}


@pytest.mark.parametrize("seed", range(3))
def test_score_outputs_equals_scoring_each_task_alone_bit_for_bit(seed: int) -> None:
    """The evaluation's one-matrix path for one-output tasks gives each task's loss and metric
    exactly as masked_loss and task_metric do on that task alone, in the same key order, for
    odd row counts, several chunks, mixed task types, a task without labels in a split, one
    class only, tied and non-finite outputs."""
    rng = np.random.default_rng(seed)
    types = ["binary", "regression", "multiclass", "binary", "binary", "regression", "binary"]
    n_rows = 203 + seed * 37
    y = rng.integers(0, 2, (n_rows, len(types))).astype(np.float32)
    y[:, 1] = rng.standard_normal(n_rows)
    y[:, 5] = rng.standard_normal(n_rows)
    y[:, 2] = rng.integers(0, 3, n_rows)
    y[rng.random(y.shape) < 0.4] = np.nan
    labels = rng.choice(["train", "val", "test"], n_rows, p=[0.6, 0.2, 0.2])
    y[labels == "val", 3] = np.nan  # no label in val
    y[labels == "test", 4] = np.where(np.isnan(y[labels == "test", 4]), np.nan, 1.0)  # one class
    inputs = _Inputs(
        x=None,
        y=torch.from_numpy(y),
        rows={s: torch.from_numpy(np.flatnonzero(labels == s)) for s in SPLITS},
        scale=[1.0, 2.5, 1.0, 1.0, 1.0, 0.5, 1.0],
    )
    dims = [3 if kind == "multiclass" else 1 for kind in types]
    outputs = {}
    for split in SPLITS:
        rows = int((labels == split).sum())
        chunks, start = [], 0
        for size in (rows // 3, rows - rows // 3):  # two chunks of odd sizes
            chunk = [torch.randn(size, d) for d in dims]
            chunk[6] = torch.randint(0, 3, (size, 1)).float()  # many ties
            chunks.append(chunk)
            start += size
        outputs[split] = chunks
    outputs["test"][1][4][0, 0] = float("inf")  # a non-finite output
    expected = _scores_task_by_task(outputs, inputs, types)
    got = score_outputs(outputs, inputs, types)
    assert list(got) == list(expected)
    assert _bits(got) == _bits(expected)
    assert math.isnan(got[("val", 3)][1]) and math.isnan(got[("test", 4)][1])
    # Labels prepared on the first evaluation serve the next one unchanged.
    assert _bits(score_outputs(outputs, inputs, types)) == _bits(expected)


def test_rows_to_table_repeats_constant_columns() -> None:
    rows = [
        {"task": t, "task_type": "binary", "split": s, "epoch": 1, "metric": "loss",
         "value": float(i), "n_labelled": 3, "wall_time_s": 0.5}
        for i, (t, s) in enumerate(product(["a", "b"], SPLITS))
    ]  # fmt: skip
    constant = {
        "dataset": "d", "network": "a+b@full", "tasks": ["a", "b"], "n_tasks": 2,
        "size": "full", "width": 8, "cost": 1.5, "macs": 10, "architecture": "hard_sharing",
        "weighting": "equal", "seed": 0, "epochs": 1, "device": "cpu", "config_hash": "h",
        "versions": "{}", "status": "ok", "diverged_epoch": None,
    }  # fmt: skip
    table = rows_to_table(rows, constant)
    assert table.schema == METRICS
    assert table.column("tasks").to_pylist() == [["a", "b"]] * len(rows)
    assert table.column("diverged_epoch").null_count == len(rows)
    assert table.column("value").to_pylist() == [float(i) for i in range(len(rows))]
    assert rows_to_table([], constant).num_rows == 0


# ------------------------------------------------------------------------- train_network


def _setup(dataset: dict | None = None, training: dict | None = None) -> tuple:
    dataset = dataset or {}
    config = resolve_config({
        "dataset": {"name": "synthetic", "rows": 300, "features": 8, "clusters": 1,
                    "tasks_per_cluster": 2, **dataset},
        "sweep": {"orders": [1, 2]},
        "model": {"hidden": [16]},
        "training": {"epochs": 2, "batch_size": 64, "lr": 0.01, **(training or {})},
    })  # fmt: skip
    data = load_dataset(config["dataset"])
    labels = make_split(data.n_rows, config["split"]["fractions"], config["split"]["seed"])
    return config, data, labels


def evaluation_rows(table) -> list[dict]:
    """The per-split loss and metric rows (a weighting method may add learned values, e.g.
    task weights, as further rows of the train split)."""
    rows = table.to_pylist()
    evaluated = [r for r in rows if r["metric"] in ("loss", METRIC_OF[r["task_type"]])]
    others = [r for r in rows if r not in evaluated]
    assert all(r["split"] == "train" for r in others)
    return evaluated


@pytest.fixture(scope="module")
def regression_run() -> tuple:
    config, data, labels = _setup()
    spec = network_spec(config, ("c0t0", "c0t1"), "full", 0)
    return data, labels, spec, train_network(data, labels, spec, CPU)


def test_train_network_rows_and_schema(regression_run: tuple) -> None:
    _, _, spec, table = regression_run
    tasks, epochs = 2, spec["training"]["epochs"]
    assert table.schema.equals(METRICS, check_metadata=False)
    # The declared metadata, plus the spec the run trained with (export names what changed).
    metadata = table.schema.metadata
    assert all(metadata[k] == v for k, v in METRICS.metadata.items())
    assert json.loads(metadata[SPEC_METADATA]) == json.loads(json.dumps(spec))
    rows = evaluation_rows(table)
    assert len(rows) == tasks * len(SPLITS) * epochs * 2
    keys = {(r["task"], r["split"], r["epoch"], r["metric"]) for r in rows}
    assert keys == set(product(["c0t0", "c0t1"], SPLITS, [1, 2], ["loss", "rmse"]))
    assert {r["network"] for r in rows} == {"c0t0+c0t1@full"}
    assert {r["status"] for r in rows} == {"ok"}
    assert all(r["diverged_epoch"] is None for r in rows)
    assert all(math.isfinite(r["value"]) for r in rows)
    # Cost of a two-head network on the full trunk, by hand (8 -> 16 -> one unit per head).
    assert {r["macs"] for r in rows} == {8 * 16 + 2 * 16}
    (cost,) = {r["cost"] for r in rows}
    assert cost == pytest.approx((8 * 16 + 2 * 16) / (8 * 16 + 16))


def test_regression_rmse_is_in_original_units(regression_run: tuple) -> None:
    """The loss is the MSE of standardised targets; RMSE = sqrt(loss) * train std."""
    data, labels, _, table = regression_run
    rows = evaluation_rows(table)
    value = {(r["task"], r["split"], r["epoch"], r["metric"]): r["value"] for r in rows}
    for task, split, epoch in product(["c0t0", "c0t1"], SPLITS, [1, 2]):
        std = np.nanstd(data.targets[labels == "train", data.task_index(task)])
        expected = math.sqrt(value[(task, split, epoch, "loss")]) * std
        assert value[(task, split, epoch, "rmse")] == pytest.approx(expected, rel=1e-4)


def test_train_network_is_deterministic(regression_run: tuple) -> None:
    data, labels, spec, first = regression_run
    again = train_network(data, labels, spec, CPU)
    assert again.column("value").to_pylist() == first.column("value").to_pylist()
    other_seed = train_network(data, labels, {**spec, "seed": 1}, CPU)
    assert other_seed.column("value").to_pylist() != first.column("value").to_pylist()


def test_training_learns_something() -> None:
    config, data, labels = _setup(training={"epochs": 3})
    spec = network_spec(config, ("c0t0",), "full", 0)
    rows = evaluation_rows(train_network(data, labels, spec, CPU))
    train_loss = {r["epoch"]: r["value"] for r in rows
                  if r["split"] == "train" and r["metric"] == "loss"}  # fmt: skip
    assert train_loss[3] < train_loss[1] < 1.5  # standardised targets: predicting 0 scores ~1


def test_missing_labels_are_counted_and_do_not_crash() -> None:
    config, data, labels = _setup(dataset={"missing_fraction": 0.4, "task_type": "binary"})
    assert np.isnan(data.targets).any()
    spec = network_spec(config, ("c0t0", "c0t1"), "full", 0)
    table = train_network(data, labels, spec, CPU)
    rows = evaluation_rows(table)
    assert len(rows) == 2 * 3 * 2 * 2
    for r in table.to_pylist():
        column = data.targets[labels == r["split"], data.task_index(r["task"])]
        assert r["n_labelled"] == int((~np.isnan(column)).sum())
        assert r["n_labelled"] < column.size
        assert math.isfinite(r["value"])
    assert {r["metric"] for r in rows} == {"loss", "roc_auc"}
    assert all(0.0 <= r["value"] <= 1.0 for r in rows if r["metric"] == "roc_auc")


@pytest.mark.parametrize("task_type", ["regression", "binary"])
def test_divergence_is_recorded_and_stops_the_run(task_type: str) -> None:
    # Adam's step is ~lr whatever the gradient, so lr=1e6 stays finite; 1e30 overflows float32.
    config, data, labels = _setup(dataset={"task_type": task_type},
                                  training={"lr": 1e30, "epochs": 3})  # fmt: skip
    spec = network_spec(config, ("c0t0", "c0t1"), "full", 0)
    lines: list[str] = []
    table = train_network(data, labels, spec, CPU, lines.append)  # does not raise
    assert table.schema.equals(METRICS)
    everything = table.to_pylist()
    assert {r["status"] for r in everything} == {"diverged"}
    (epoch,) = {r["diverged_epoch"] for r in everything}
    assert epoch is not None and 1 <= epoch < 3
    assert max(r["epoch"] for r in everything) == epoch  # nothing trained or recorded after it
    assert {r["epochs"] for r in everything} == {3}
    rows = evaluation_rows(table)
    assert len(rows) == 2 * 3 * epoch * 2
    assert all(math.isnan(r["value"]) for r in rows if r["epoch"] == epoch)
    assert len(lines) == epoch and "DIVERGED" in lines[-1]


def test_run_snakemake_job_writes_parquet_and_log(tmp_path: Path) -> None:
    config, data, labels = _setup(training={"epochs": 3})
    split = tmp_path / "split.parquet"
    write_split(labels, str(split))
    spec = network_spec(config, ("c0t1",), "half", 0)
    out = tmp_path / "runs" / "c0t1@half.parquet"
    log = tmp_path / "logs" / "c0t1@half.log"
    log.parent.mkdir()
    threads = torch.get_num_threads()
    try:
        run_snakemake_job(
            input={"split": str(split)},
            output={"metrics": str(out)},
            params={"spec": spec},
            log=[str(log)],
            threads=1,
        )
    finally:
        torch.set_num_threads(threads)
    check_file(out, METRICS)
    table = pq.read_table(out)
    assert len(evaluation_rows(table)) == 1 * 3 * 3 * 2
    assert set(table.column("size").to_pylist()) == {"half"}
    assert set(table.column("network").to_pylist()) == {"c0t1@half"}
    lines = log.read_text().splitlines()
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/3", "2/3", "3/3"]
    assert all("c0t1=" in line for line in epoch_lines)
    assert "c0t1@half" in lines[0]
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp file left
    # The file holds what train_network computes for the same spec and split.
    direct = train_network(data, labels, spec, CPU)
    assert table.column("value").to_pylist() == direct.column("value").to_pylist()


def test_log_line_of_hundreds_of_tasks_is_a_summary_not_every_task() -> None:
    from pipeline.training import _log_line

    tasks = [f"assay {j} (long name)" for j in range(617)]
    evaluation = {
        (split, j): (float("nan") if j == 5 else 0.01 * (j % 50), 0.5)
        for split in ("train", "val", "test") for j in range(len(tasks))
    }  # fmt: skip
    line = _log_line(3, 10, tasks, evaluation, 2.5, None)
    assert len(line) < 400 and "assay" not in line
    assert "max=0.49000 over 616 of 617 tasks" in line
    few = _log_line(3, 10, tasks[:2], {k: v for k, v in evaluation.items() if k[1] < 2}, 2.5, None)
    assert "assay 1 (long name)=0.01000" in few
