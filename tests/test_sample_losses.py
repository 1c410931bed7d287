"""Per-sample test losses (TEST_LOSSES, pipeline/sample_losses.py): their weighted mean is each
task's recorded final test loss; a packed training writes bitwise the same values as a training
alone (also when a pack out of memory is retried in halves); a diverged network has no rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from vision_helpers import write_images, write_trunk_module

from pipeline import packing
from pipeline.config import resolve_config
from pipeline.datasets import load_dataset
from pipeline.packing import PackedTrainer
from pipeline.sample_losses import final_sample_losses, write_sample_losses
from pipeline.schema import TEST_LOSSES, check_file
from pipeline.split import make_split
from pipeline.sweep import network_spec
from pipeline.training import Trainer

CPU = torch.device("cpu")


def _setup(kind: str, epochs: int = 2) -> tuple:
    if kind == "binary":
        dataset = {"name": "tox21", "tasks": ["NR-AR", "NR-AhR", "SR-ARE", "SR-p53", "SR-MMP"]}
    else:
        dataset = {"name": "synthetic", "rows": 600, "features": 19, "clusters": 2,
                   "tasks_per_cluster": 2, "missing_fraction": 0.2,
                   "task_type": kind}  # fmt: skip
    config = resolve_config({
        "dataset": dataset, "model": {"hidden": [32, 21]},
        "training": {"epochs": epochs, "batch_size": 256 if kind == "binary" else 64},
    })  # fmt: skip
    data = load_dataset(config["dataset"])
    labels = make_split(data.n_rows, config["split"]["fractions"], 0)
    tasks = config["dataset"]["tasks"]
    sets = [tuple(tasks[:3]), tuple(tasks[1:4]), (tasks[0], tasks[2], tasks[3])]
    return config, data, labels, sets


def _recorded_test(table: pa.Table) -> dict[str, float]:
    frame = table.to_pandas()
    final = frame[
        (frame.metric == "loss") & (frame.split == "test") & (frame.epoch == frame.epoch.max())
    ]
    return dict(zip(final.task, final.value))


def _weighted_means(samples: pa.Table) -> dict[str, float]:
    frame = samples.to_pandas()
    frame["weighted"] = frame["loss"].astype(np.float64) * frame["weight"]
    sums = frame.groupby("task")[["weighted", "weight"]].sum()
    return dict(sums["weighted"] / sums["weight"])


@pytest.mark.parametrize("kind", ["binary", "regression"])
def test_mean_of_per_sample_losses_is_the_recorded_test_loss(kind: str, tmp_path: Path) -> None:
    config, data, labels, sets = _setup(kind)
    trainer = Trainer(data, labels, network_spec(config, sets[0], "full", 0), CPU)
    table = trainer.fit()
    samples = final_sample_losses(trainer)
    recorded = _recorded_test(table)
    means = _weighted_means(samples)
    assert set(means) == set(recorded) == set(sets[0])
    for task, value in recorded.items():
        assert means[task] == pytest.approx(value, rel=1e-6), task
    # One row per labelled test value, each a test row, each vector task weighing 1.
    test_rows = set(np.flatnonzero(labels == "test"))
    assert set(samples["row"].to_pylist()) <= test_rows
    for task in sets[0]:
        col = data.targets[labels == "test", data.task_index(task)]
        assert samples.filter(pa.compute.equal(samples["task"], task)).num_rows == int(
            (~np.isnan(col)).sum()
        )
    assert set(samples["weight"].to_pylist()) == {1}
    assert set(samples["network"].to_pylist()) == {trainer.network.name}
    path = tmp_path / "s.parquet"
    write_sample_losses(samples, path)
    check_file(path, TEST_LOSSES)


def _bitwise(a: pa.Table, b: pa.Table) -> bool:
    return a.equals(b) and np.array_equal(
        a["loss"].to_numpy().view(np.uint32), b["loss"].to_numpy().view(np.uint32)
    )


def _same_weights(a, b) -> bool:
    left, right = a.final["model"].state_dict(), b.final["model"].state_dict()
    return all(torch.equal(left[k], right[k]) for k in left)


@pytest.mark.parametrize("kind", ["binary", "regression"])
def test_packed_writes_bitwise_the_per_sample_losses_of_alone(kind: str) -> None:
    config, data, labels, sets = _setup(kind)
    specs = [network_spec(config, t, "full", 0) for t in sets]
    alone = []
    for spec in specs:
        trainer = Trainer(data, labels, spec, CPU)
        trainer.fit()
        alone.append((trainer, final_sample_losses(trainer)))
    trainers = [Trainer(data, labels, s, CPU) for s in specs]
    PackedTrainer(trainers).fit()
    for (by_itself, samples), trainer in zip(alone, trainers):
        packed = final_sample_losses(trainer)
        assert packed.num_rows > 0
        # Bitwise, also on a CPU whose BLAS rounds by alignment (an AMD EPYC: before the
        # pack gave its members aligned memory, 2 of these 3 ended a last bit apart).
        assert _same_weights(trainer, by_itself)
        assert _bitwise(samples, packed)


def test_a_pack_retried_in_halves_still_reports_to_its_trainers(monkeypatch) -> None:
    config, data, labels, sets = _setup("regression")
    specs = [network_spec(config, t, "full", 0) for t in sets]
    real_fit = PackedTrainer.fit

    def fit(self):
        if len(self.trainers) > 1:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
        return real_fit(self)

    monkeypatch.setattr(PackedTrainer, "fit", fit)
    trainers = [Trainer(data, labels, s, CPU) for s in specs]
    packing.train_pack(trainers)
    monkeypatch.setattr(PackedTrainer, "fit", real_fit)
    for spec, trainer in zip(specs, trainers):
        alone = Trainer(data, labels, spec, CPU)
        alone.fit()
        assert _bitwise(final_sample_losses(alone), final_sample_losses(trainer))


def test_a_diverged_network_has_no_rows() -> None:
    config, data, labels, sets = _setup("regression")
    trainer = Trainer(data, labels, network_spec(config, sets[0], "full", 0), CPU)
    trainer.inputs.y[trainer.inputs.rows["train"][0], 0] = float("inf")
    table = trainer.fit()
    assert set(table["status"].to_pylist()) == {"diverged"}
    samples = final_sample_losses(trainer)
    assert samples.num_rows == 0 and samples.schema.equals(TEST_LOSSES)


def test_dense_tasks_weigh_each_image_by_its_labelled_pixels(tmp_path: Path, monkeypatch) -> None:
    write_images(tmp_path / "images.npz", label=True)
    write_trunk_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    from vision_helpers import TASKS

    config = resolve_config({
        "dataset": {"name": "arrays", "path": str(tmp_path / "images.npz"),
                    "targets": {**TASKS, "label": "binary"}},
        "model": {"trunk": "my_trunks:conv", "head_hidden": [4]},
        "training": {"epochs": 1, "batch_size": 16, "lr": 0.01},
        "sweep": {"orders": [1], "sizes": ["full"]},
    })  # fmt: skip
    data = load_dataset(config["dataset"])
    labels = make_split(data.n_rows, config["split"]["fractions"], config["split"]["seed"])
    tasks = tuple(config["dataset"]["tasks"])
    trainer = Trainer(data, labels, network_spec(config, tasks, "full", 0), CPU)
    table = trainer.fit()
    samples = final_sample_losses(trainer)
    recorded = _recorded_test(table)
    means = _weighted_means(samples)
    for task, value in recorded.items():
        assert means[task] == pytest.approx(value, rel=1e-6), task
    dense = [t for t in tasks if t != "label"]
    weights = samples.filter(pa.compute.is_in(samples["task"], pa.array(dense)))["weight"]
    assert max(weights.to_pylist()) > 1
