"""Multi-task training methods (issue #5): each method's defining behaviour on tiny synthetic
data, what they record, their cost, spec isolation, determinism, resume, and one Snakemake run
crossing non-default methods."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.config import resolve_config
from pipeline.datasets import load_dataset
from pipeline.models import ModelShape, build_model, network_cost, widths_for_size
from pipeline.models.adashare import AdaShare
from pipeline.models.hard_sharing import HardSharing
from pipeline.models.trunks import MLPTrunk
from pipeline.split import make_split
from pipeline.sweep import network_spec, sweep_methods
from pipeline.training import Checkpointer, train_network
from pipeline.weighting import build_weighting
from pipeline.weighting.dwa import dwa_weights
from workflow import network_files, snakemake, write_config

CPU = torch.device("cpu")
TASKS = ("c0t0", "c0t1", "c1t0")


def tiny_config(**training) -> dict:
    return resolve_config({
        "dataset": {"name": "synthetic", "rows": 400, "features": 12, "clusters": 2,
                    "tasks_per_cluster": 2, "task_type": "regression", "noise": 0.1},
        "model": {"hidden": [16, 16, 16]},
        "training": {"epochs": 3, "batch_size": 64, "lr": 0.005, **training},
    }, check_data=False)  # fmt: skip


@pytest.fixture(scope="module")
def tiny():
    config = tiny_config()
    data = load_dataset(config["dataset"])
    labels = make_split(data.n_rows, config["split"]["fractions"], 0)
    return config, data, labels


def train(
    tiny,
    architecture="hard_sharing",
    weighting="equal",
    tasks=TASKS,
    size="full",
    config=None,
    checkpoint=None,
    log=lambda line: None,
):
    base, data, labels = tiny
    spec = network_spec(config or base, tasks, size, 0, architecture, weighting)
    return train_network(data, labels, spec, CPU, log, checkpoint).to_pandas()


def learned(table, metric: str, epoch: int | None = None):
    rows = table[(table.metric == metric) & (table.split == "train")]
    epoch = rows.epoch.max() if epoch is None else epoch
    return rows[rows.epoch == epoch].set_index("task")["value"]


# ---- loss weighting --------------------------------------------------------------------------


def test_equal_weighting_is_the_plain_sum_and_records_unit_weights(tiny) -> None:
    losses = torch.tensor([0.3, 1.7, 0.05])
    assert float(build_weighting("equal", 3).combine(losses, None)) == pytest.approx(2.05)
    table = train(tiny)
    weights = table[table.metric == "task_weight"]
    assert len(weights) == 3 * 3  # one row per task per epoch
    assert (weights.value == 1.0).all() and (weights.split == "train").all()
    assert (weights.n_labelled > 0).all()


def test_dwa_weights_follow_the_loss_history() -> None:
    dwa = build_weighting("dwa", 3, {"temperature": 2.0})
    history = [[1.0, 1.0, 1.0], [0.5, 0.9, 1.0], [0.25, 0.9, 1.1]]
    seen = []
    for epoch, losses in enumerate(history, start=1):
        seen.append(dwa.task_weights())
        dwa.end_epoch(epoch, losses)
    seen.append(dwa.task_weights())
    # Weights are 1 for the first two epochs (no loss ratio yet).
    assert seen[0] == seen[1] == [1.0, 1.0, 1.0]

    def expected(last, before):  # K * softmax(ratio / T) of the last two epochs' losses
        ratio = np.array(last) / np.array(before)
        return (3 * np.exp(ratio / 2) / np.exp(ratio / 2).sum()).tolist()

    assert seen[2] == pytest.approx(expected(history[1], history[0]))  # epoch 3
    assert seen[3] == pytest.approx(expected(history[2], history[1]))  # epoch 4
    assert dwa_weights(history[2], history[1], 2.0) == pytest.approx(seen[3])
    # The slowest-falling task gets the most weight; the weights sum to K.
    assert np.argmax(seen[3]) == 2 and sum(seen[3]) == pytest.approx(3)
    dwa.weights.copy_(torch.tensor([0.5, 1.0, 1.5]))
    combined = dwa.combine(torch.tensor([1.0, 2.0, 4.0]), None)
    assert float(combined) == pytest.approx(0.5 + 2.0 + 6.0)


def test_uncertainty_weighting_learns_lower_weight_for_the_noisier_task() -> None:
    # The learned log-variance tends to log(L): the noisier task's loss is higher, so its
    # variance grows and its weight exp(-s) shrinks.
    weighting = build_weighting("uncertainty", 2)
    optimizer = torch.optim.Adam(weighting.parameters(), lr=0.05)
    losses = torch.tensor([0.2, 2.0])
    for _ in range(600):
        optimizer.zero_grad()
        weighting.combine(losses, None).backward()
        optimizer.step()
    values = weighting.recorded()
    assert values["log_variance"] == pytest.approx(np.log([0.2, 2.0]).tolist(), abs=0.05)
    assert values["task_weight"][0] > values["task_weight"][1]

    # End to end: a regression task with 5x the label noise gets the larger variance.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=g)
    w = torch.randn(8, 1, generator=g)
    y = torch.cat(
        [
            x @ w + 0.1 * torch.randn(512, 1, generator=g),
            x @ w + 2.0 * torch.randn(512, 1, generator=g),
        ],
        dim=1,
    )
    model = HardSharing(MLPTrunk(8, [16], g), [1, 1], g)
    weighting = build_weighting("uncertainty", 2)
    optimizer = torch.optim.Adam([*model.parameters(), *weighting.parameters()], lr=0.02)
    for _ in range(300):
        out = model(x)
        losses = torch.stack([((out[j][:, 0] - y[:, j]) ** 2).mean() for j in range(2)])
        optimizer.zero_grad()
        weighting.combine(losses, model).backward()
        optimizer.step()
    log_var = weighting.recorded()["log_variance"]
    assert log_var[1] > log_var[0] + 1.0


def _grad_norm_ratio(weighting_name: str, steps: int = 150) -> tuple[float, float]:
    """max/min of the per-task gradient norms (of the weighted losses) at the last shared
    layer, at the start and after training two tasks whose loss scales differ 100x."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 8, generator=g)
    y = torch.cat([x @ torch.randn(8, 1, generator=g), 10 * (x @ torch.randn(8, 1, generator=g))],
                  dim=1)  # fmt: skip
    model = HardSharing(MLPTrunk(8, [16, 16], g), [1, 1], g)
    weighting = build_weighting(weighting_name, 2, {"alpha": 0.0} if weighting_name == "gradnorm"
                                else None)  # fmt: skip
    optimizer = torch.optim.Adam([*model.parameters(), *weighting.parameters()], lr=0.01)
    shared = model.trunk.layers[-1].weight

    def ratio() -> float:
        out = model(x)
        losses = [((out[j][:, 0] - y[:, j]) ** 2).mean() for j in range(2)]
        weights = weighting.task_weights()
        norms = [w * torch.autograd.grad(loss, shared, retain_graph=True)[0].norm().item()
                 for w, loss in zip(weights, losses)]  # fmt: skip
        return max(norms) / min(norms)

    start = ratio()
    for _ in range(steps):
        out = model(x)
        losses = torch.stack([((out[j][:, 0] - y[:, j]) ** 2).mean() for j in range(2)])
        optimizer.zero_grad()
        weighting.combine(losses, model).backward()
        optimizer.step()
        weighting.after_step()
    return start, ratio()


def test_gradnorm_equalises_gradient_norms() -> None:
    start, equal_end = _grad_norm_ratio("equal")
    _, gradnorm_end = _grad_norm_ratio("gradnorm")
    assert start > 5  # the two tasks' gradients differ a lot at the start
    assert gradnorm_end < 1.2, gradnorm_end
    assert gradnorm_end < equal_end / 1.8  # equal weighting leaves them ~2x apart
    weighting = build_weighting("gradnorm", 3)
    weighting.weights.data = torch.tensor([3.0, 1.0, 2.0])
    weighting.after_step()
    assert sum(weighting.task_weights()) == pytest.approx(3.0)  # renormalised to K


def test_gradnorm_records_weights_and_grad_norms(tiny) -> None:
    table = train(tiny, weighting="gradnorm")
    weights = learned(table, "task_weight")
    assert sum(weights) == pytest.approx(3.0, rel=1e-5) and len(weights) == 3
    assert (learned(table, "grad_norm") > 0).all()


def test_unknown_weighting_option_is_rejected() -> None:
    with pytest.raises(ValueError, match="training.dwa"):
        build_weighting("dwa", 2, {"temprature": 1.0})


# ---- architectures ---------------------------------------------------------------------------

SHAPE = ModelShape(in_features=12, hidden=(16, 16, 16), head_hidden=())


@pytest.mark.parametrize("architecture", ["hard_sharing", "mtan", "adashare"])
def test_half_size_is_half_the_architectures_single_task_cost(architecture: str) -> None:
    widths = widths_for_size(architecture, SHAPE, "half")
    _, cost = network_cost(architecture, SHAPE, widths, [1])
    assert cost == pytest.approx(0.5, abs=0.08)
    macs = [network_cost(architecture, SHAPE, SHAPE.hidden, [1] * k) for k in (1, 2, 3)]
    assert macs[0][1] == 1.0
    # Every task adds the same per-task modules: constant increments, costs above 1.
    assert macs[2][0] - macs[1][0] == macs[1][0] - macs[0][0] > 0
    assert macs[2][1] == pytest.approx(macs[2][0] / macs[0][0]) and macs[2][1] > 1.0
    if architecture != "mtan":
        # Counted by hand: a 12-16-16-16 trunk (residual for AdaShare: same multiply-adds)
        # and one 16 -> 1 head per task.
        assert macs[0][0] == 12 * 16 + 16 * 16 + 16 * 16 + 16
        assert macs[2][0] == macs[0][0] + 2 * 16


def test_mtan_attends_per_task_and_its_modules_cost() -> None:
    g = torch.Generator().manual_seed(0)
    model = build_model("mtan", SHAPE, SHAPE.hidden, [1, 1, 3], g)
    outputs = model(torch.randn(5, 12))
    assert [tuple(o.shape) for o in outputs] == [(5, 1), (5, 1), (5, 3)]
    hard = build_model("hard_sharing", SHAPE, SHAPE.hidden, [1, 1, 3], g)
    # Per task: 3 attention masks (16->4->16, then 32->4->16 twice) and 2 shared 16x16 bridges.
    per_task = (16 * 4 + 4 * 16) + 2 * (32 * 4 + 4 * 16) + 2 * 16 * 16
    assert model.macs() == hard.macs() + 3 * per_task
    # Masks select features: a task's head sees the trunk features scaled by its mask in (0, 1).
    assert len(model.attention) == 3 and len(model.attention[0]) == 3


def test_adashare_cost_counts_each_distinct_path_once() -> None:
    g = torch.Generator().manual_seed(0)
    model = build_model("adashare", SHAPE, SHAPE.hidden, [1, 1, 1], g)
    assert isinstance(model, AdaShare) and tuple(model.policy.shape) == (3, 2)
    stem, block, heads = 12 * 16, 16 * 16, 3 * 16
    assert model.macs() == stem + 2 * block + heads  # all execute: one shared path
    model.policy.copy_(torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
    # Block 1 runs once (tasks 0 and 1 share its input and output); task 2 skips it (identity
    # shortcut: free), so block 2 runs on two distinct inputs; task 1 skips block 2.
    assert model.macs() == stem + block + 2 * block + heads
    x = torch.randn(4, 12)
    out = model(x)
    with torch.no_grad():
        h = torch.relu(model.trunk.stem(x))
        b1 = model.trunk.blocks[0](h)
        assert torch.allclose(out[1], model.heads[1](b1))
        assert torch.allclose(out[2], model.heads[2](model.trunk.blocks[1](h)))
    model.policy.zero_()
    assert model.macs() == stem + heads  # a skipped block costs nothing


def adashare_config(**adashare) -> dict:
    return tiny_config(epochs=2, adashare={
        "warmup_epochs": 1, "policy_epochs": 6, "policy_lr": 0.1, "tau": 1.0,
        "sharing_weight": 0.0, **adashare})  # fmt: skip


def test_adashare_records_its_policy_and_sparsity_lowers_used_blocks(tiny) -> None:
    dense = train(tiny, "adashare", config=adashare_config(sparsity_weight=0.0))
    sparse = train(tiny, "adashare", config=adashare_config(sparsity_weight=5.0))
    for table in (dense, sparse):
        policy = table[table.metric.str.startswith("policy_block_")]
        # One row per task x block (2 blocks) at the search summary (epoch 0) and each epoch.
        assert sorted(policy.metric.unique()) == ["policy_block_1", "policy_block_2"]
        assert sorted(policy.epoch.unique()) == [0, 1, 2]
        assert len(policy) == 3 * 2 * 3
        search = policy[policy.epoch == 0].value
        assert ((search >= 0) & (search <= 1)).all()
        fixed = policy[policy.epoch > 0].value
        assert set(fixed.unique()) <= {0.0, 1.0}
        # The fixed decision is the search's most probable one.
        summary = policy[policy.epoch == 0].set_index(["task", "metric"]).value
        final = policy[policy.epoch == 2].set_index(["task", "metric"]).value
        assert ((summary > 0.5).astype(float) == final).all()
        # Only the retrain epochs are metric epochs.
        assert sorted(table[table.metric == "loss"].epoch.unique()) == [1, 2]

    def used(table) -> float:
        rows = table[table.metric.str.startswith("policy_block_") & (table.epoch == 2)]
        return rows.value.sum()

    assert used(sparse) < used(dense)
    assert sparse.cost.iloc[0] < dense.cost.iloc[0]  # skipped blocks cost nothing


# ---- specs, determinism, resume ---------------------------------------------------------------


def test_method_options_enter_only_their_methods_specs() -> None:
    base = tiny_config()
    tuned = tiny_config(dwa={"temperature": 5.0}, adashare={"policy_epochs": 9})
    for arch, weighting in [("hard_sharing", "equal"), ("mtan", "gradnorm")]:
        assert network_spec(base, TASKS, "full", 0, arch, weighting) == network_spec(
            tuned, TASKS, "full", 0, arch, weighting)  # fmt: skip
    dwa = network_spec(tuned, TASKS, "full", 0, "hard_sharing", "dwa")
    assert dwa["training"]["dwa"] == {"temperature": 5.0}
    assert network_spec(base, TASKS, "full", 0, "hard_sharing", "dwa") != dwa
    ada = network_spec(tuned, TASKS, "full", 0, "adashare", "equal")
    assert ada["training"]["adashare"]["policy_epochs"] == 9 and "dwa" not in ada["training"]
    assert sweep_methods(base) == [("hard_sharing", "equal")]
    crossed = resolve_config({**base, "sweep": {**base["sweep"], "methods": [
        {"architecture": "mtan", "weighting": "dwa"},
        {"architecture": "adashare", "weighting": "equal"}]}}, check_data=False)  # fmt: skip
    assert sweep_methods(crossed) == [("mtan", "dwa"), ("adashare", "equal")]


def _values(table):
    rows = table.drop(columns=["wall_time_s", "device", "versions"]).astype(str)
    return sorted(map(tuple, rows.itertuples(index=False)))


@pytest.mark.parametrize(
    "architecture,weighting",
    [("hard_sharing", "uncertainty"), ("hard_sharing", "dwa"), ("mtan", "gradnorm"),
     ("adashare", "dwa")],
)  # fmt: skip
def test_same_spec_same_values(tiny, architecture: str, weighting: str) -> None:
    a = train(tiny, architecture, weighting, config=adashare_config())
    b = train(tiny, architecture, weighting, config=adashare_config())
    assert _values(a) == _values(b)
    assert np.isfinite(a[a.metric == "loss"].value).all()


class Interrupt(Exception):
    pass


@pytest.mark.parametrize(
    "architecture,weighting", [("hard_sharing", "dwa"), ("adashare", "gradnorm")]
)
def test_interrupted_stateful_method_resumes_exactly(
    tiny, tmp_path: Path, architecture: str, weighting: str
) -> None:
    config = tiny_config(epochs=5, adashare=adashare_config()["training"]["adashare"])

    def stop_at_epoch_4(line: str) -> None:
        if line.startswith("epoch 4/"):
            raise Interrupt  # before epoch 4's checkpoint: the state of epoch 3 is on disk

    path = str(tmp_path / "ckpt.pt")
    with pytest.raises(Interrupt):
        train(tiny, architecture, weighting, config=config,
              checkpoint=Checkpointer(path, every_s=0), log=stop_at_epoch_4)  # fmt: skip
    lines: list[str] = []
    resumed = train(tiny, architecture, weighting, config=config,
                    checkpoint=Checkpointer(path, every_s=0), log=lines.append)  # fmt: skip
    assert any("resumed from" in line for line in lines)
    assert not any(line.startswith("policy") for line in lines)  # no second policy search
    straight = train(tiny, architecture, weighting, config=config)
    assert _values(resumed) == _values(straight)
    assert math.isfinite(resumed.cost.iloc[0])


# ---- the workflow ----------------------------------------------------------------------------


@pytest.mark.slow
def test_snakemake_sweep_crossing_non_default_methods(tmp_path: Path) -> None:
    write_config(tmp_path, {
        "dataset": {"tasks": ["c0t0", "c1t0"]},
        "sweep": {"orders": [1], "sizes": ["full"], "all_in_one": True, "methods": [
            {"architecture": "mtan", "weighting": "dwa"},
            {"architecture": "adashare", "weighting": "uncertainty"}]},
        "training": {"epochs": 3, "adashare": {"warmup_epochs": 1, "policy_epochs": 1}},
    })  # fmt: skip
    snakemake(tmp_path)
    files = network_files(tmp_path)
    assert sorted(files) == sorted(
        f"{method}/seed0/full/{tasks}.parquet"
        for method in ("mtan-dwa", "adashare-uncertainty")
        for tasks in ("c0t0", "c1t0", "c0t0+c1t0")
    )
    metrics = tmp_path / "results" / "metrics.parquet"
    table = pq.read_table(metrics).to_pandas()
    assert set(zip(table.architecture, table.weighting)) == {
        ("mtan", "dwa"), ("adashare", "uncertainty")}  # fmt: skip
    # What the methods learned, queryable per epoch.
    weights = duckdb.sql(
        f"SELECT architecture, weighting, network, task, epoch, value FROM '{metrics}' "
        f"WHERE metric = 'task_weight' ORDER BY ALL"
    ).df()
    assert len(weights) == 2 * (1 + 1 + 2) * 3
    log_var = table[table.metric == "log_variance"]
    assert set(log_var.weighting) == {"uncertainty"} and len(log_var) == (1 + 1 + 2) * 3
    policy = table[table.metric == "policy_block_1"]
    assert set(policy.architecture) == {"adashare"}
    # Both methods' networks are in the collected table's final losses.
    final = table[(table.metric == "loss") & (table.split == "test") & (table.epoch == 3)]
    assert len(final) == 2 * (1 + 1 + 2)
