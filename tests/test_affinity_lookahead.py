"""TAG's lookahead affinity (pipeline/affinity/lookahead.py): the vectorised computation against
a slow reference taken task by task, NaN handling, and that recording never changes training."""

from __future__ import annotations

import copy

import numpy as np
import pyarrow as pa
import pytest
import torch

from pipeline.affinity.lookahead import AffinityRecorder
from pipeline.config import resolve_config
from pipeline.datasets import load_dataset
from pipeline.schema import AFFINITY
from pipeline.split import make_split
from pipeline.sweep import network_spec
from pipeline.training import Trainer

CPU = torch.device("cpu")


def _trainer(dataset: dict, architecture: str = "hard_sharing", epochs: int = 2) -> Trainer:
    config = resolve_config(
        {"dataset": dataset, "training": {"epochs": epochs, "batch_size": 64},
         "model": {"hidden": [16, 8]}},
        check_data=False,
    )  # fmt: skip
    data = load_dataset(config["dataset"])
    labels = make_split(data.n_rows, config["split"]["fractions"], config["split"]["seed"])
    tasks = tuple(config["dataset"]["tasks"])
    spec = network_spec(config, tasks, "full", 0, architecture, "equal")
    return Trainer(data, labels, spec, CPU)


SYNTHETIC = {"name": "synthetic", "clusters": 2, "tasks_per_cluster": 2, "rows": 300,
             "missing_fraction": 0.3}  # fmt: skip
TOX21 = {"name": "tox21", "tasks": ["NR-AR", "NR-AhR", "SR-p53"]}


def _slow_reference(trainer: Trainer, model, batch: torch.Tensor, lr: float) -> np.ndarray:
    """Z(i -> j) one source task at a time: a copy of the model, an SGD step of its shared
    parameters on task i's loss alone, then every task's loss through the ordinary forward."""
    n = len(trainer.tasks)
    before = trainer.task_losses(model, batch).detach()
    result = np.zeros((n, n))
    for i in range(n):
        clone = copy.deepcopy(model)
        shared = clone.shared_parameters()
        loss = trainer.task_losses(clone, batch)[i]
        grads = torch.autograd.grad(loss, shared, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(shared, grads):
                if g is not None:
                    p -= lr * g
            after = trainer.task_losses(clone, batch)
        result[i] = (1 - after / before).numpy()
    return result


@pytest.mark.parametrize(
    ("dataset", "architecture"),
    [(SYNTHETIC, "hard_sharing"), (TOX21, "hard_sharing"), (SYNTHETIC, "mtan")],
)
def test_vectorised_lookahead_equals_task_by_task_reference(dataset, architecture) -> None:
    trainer = _trainer(dataset, architecture)
    model = trainer.build_model()
    batch = trainer.epoch_batches()[0]
    # A large step, so the affinities are far above float32 rounding.
    recorder = AffinityRecorder(trainer, lookahead_lr=0.5)
    fast = recorder.step_affinity(model, batch).numpy()
    slow = _slow_reference(trainer, model, batch, lr=0.5)
    assert np.isfinite(fast).all()
    assert np.abs(slow).max() > 1e-3  # the test compares real signal, not zeros
    np.testing.assert_allclose(fast, slow, rtol=2e-3, atol=2e-5)


def test_a_task_without_labels_in_the_batch_gives_nan_not_a_crash() -> None:
    trainer = _trainer(SYNTHETIC)
    model = trainer.build_model()
    batch = trainer.epoch_batches()[0]
    trainer.inputs.y[batch, 1] = float("nan")  # task 1 has no label in this batch
    value = AffinityRecorder(trainer, lookahead_lr=0.5).step_affinity(model, batch).numpy()
    assert np.isnan(value[1, :]).all() and np.isnan(value[:, 1]).all()
    others = np.delete(np.delete(value, 1, axis=0), 1, axis=1)
    assert np.isfinite(others).all()


def test_recording_does_not_change_training_and_writes_the_declared_table() -> None:
    plain = _trainer(SYNTHETIC).fit()
    trainer = _trainer(SYNTHETIC)
    recorder = AffinityRecorder(trainer, every=3)
    trainer.observer = recorder
    observed = trainer.fit()
    drop = ["wall_time_s"]
    assert plain.drop(drop).equals(observed.drop(drop))
    table = recorder.table("hash")
    assert table.schema.equals(AFFINITY, check_metadata=False)
    n = len(trainer.tasks)
    assert table.num_rows == n * n * 2  # every pair, every epoch
    steps = pa.compute.max(table["steps"]).as_py()
    batches_per_epoch = len(trainer.epoch_batches())
    # every=3: about a third of each epoch's steps are lookahead steps.
    assert 0 < steps <= -(-batches_per_epoch // 3) + 1
    assert set(table["source"].to_pylist()) == set(trainer.tasks)


@pytest.mark.parametrize("dataset", [SYNTHETIC, TOX21])
def test_kernel_path_equals_the_generic_vectorised_path(dataset) -> None:
    """The default model's B x B kernel lookahead and the architecture-agnostic jacrev/vmap one
    give the same affinities (both are exact; neither materialises a task loop)."""
    trainer = _trainer(dataset)
    model = trainer.build_model()
    batch = trainer.epoch_batches()[0]
    recorder = AffinityRecorder(trainer, lookahead_lr=0.5)
    kernel, kernel_before = recorder._kernel_lookahead(model, batch)
    generic, generic_before = recorder._generic_lookahead(model, batch)
    torch.testing.assert_close(kernel_before, generic_before, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(kernel, generic, rtol=1e-4, atol=1e-6)
