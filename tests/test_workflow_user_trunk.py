"""A trunk of your own on fingerprint data (issue 20 item 1): validation trains one step of the
very network every job trains, on the batch type training feeds it; a user's trunk gets a dense
float tensor unless it declares ``accepts_sparse_batch``; through the real workflow on Tox21 and
ToxCast (images: tests/test_workflow_vision.py); editing the factory's code, not an unrelated
addition to its file, retrains, and ``export`` names ``model.trunk_source`` (item 6)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from pipeline.config import ConfigError, resolve_config
from pipeline.datasets import load_dataset
from pipeline.models.layers import SparseBatch
from pipeline.split import make_split
from pipeline.sweep import network_spec
from pipeline.training import Trainer
from workflow import REPO, snakemake, write_config

TRUNKS = '''
import torch
from torch import nn


class Gated(nn.Module):
    """A gated MLP: the issue's example (nn.Linear needs a dense tensor)."""

    def __init__(self, n, width):
        super().__init__()
        h = max(1, round(32 * width))
        self.value, self.gate = nn.Linear(n, h), nn.Linear(n, h)

    def forward(self, x):
        return torch.relu(self.value(x)) * torch.sigmoid(self.gate(x))


def gated(input_shape, width):
    return Gated(input_shape[0], width)


class Bag(nn.Module):
    """Sums the rows of the set bits when handed the sparse batch; dense input too."""

    accepts_sparse_batch = True

    def __init__(self, n, width):
        super().__init__()
        self.bag = nn.EmbeddingBag(n, max(1, round(32 * width)), mode="sum")
        self.sparse_calls = 0

    def forward(self, x):
        if isinstance(x, torch.Tensor):
            return torch.relu(x @ self.bag.weight)
        self.sparse_calls += 1
        return torch.relu(self.bag(x.indices, x.offsets))


def bag(input_shape, width):
    return Bag(input_shape[0], width)


class TrainOnly(nn.Module):
    """Fine in eval mode without gradients; breaks in a training step."""

    def __init__(self, n):
        super().__init__()
        self.layer = nn.Linear(n, 8)

    def forward(self, x):
        if self.training:
            raise RuntimeError("dropout schedule missing")
        return self.layer(x)


def train_only(input_shape, width):
    return TrainOnly(input_shape[0])
'''

TOX21 = ["NR-AR", "NR-AhR", "SR-MMP"]
TOXCAST = ["ACEA_T47D_80hr_Negative", "ACEA_T47D_80hr_Positive", "APR_HepG2_CellCycleArrest_24h_dn"]


@pytest.fixture
def trunks(tmp_path: Path, monkeypatch) -> Path:
    (tmp_path / "my_fp_trunks.py").write_text(TRUNKS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _config(dataset: str, tasks: list[str], trunk: str, **sweep) -> dict:
    return {
        "dataset": {"name": dataset, "tasks": tasks},
        "model": {"trunk": trunk, "hidden": [32]},
        "sweep": {"orders": [1], "sizes": ["full"], "all_in_one": True, **sweep},
        "training": {"epochs": 1, "batch_size": 256},
        "selection": {"budgets": [1, 2, 3]},
    }


def test_a_dense_trunk_gets_a_dense_float_batch_from_fingerprints(trunks: Path) -> None:
    config = resolve_config(_config("tox21", TOX21, "my_fp_trunks:gated"))
    data = load_dataset(config["dataset"])
    assert data.binary_features  # the sparse first-layer path is in play
    labels = make_split(data.n_rows, config["split"]["fractions"], config["split"]["seed"])
    trainer = Trainer(
        data, labels, network_spec(config, tuple(TOX21), "full", 0), torch.device("cpu")
    )
    model = trainer.build_model()
    batch = trainer.epoch_batches()[0]
    fed = trainer.batch_input(batch)
    assert isinstance(fed, SparseBatch)  # what the trainer feeds the network...
    seen = []
    model.trunk.body.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    trainer.task_losses(model, batch).sum().backward()
    # ... and what the user's module receives: the same rows, dense, float.
    assert isinstance(seen[0], torch.Tensor) and seen[0].dtype == torch.float32
    expected = torch.from_numpy(data.features[batch.numpy()]).float()
    assert torch.equal(seen[0], expected)


def test_a_trunk_that_accepts_the_sparse_batch_gets_it(trunks: Path) -> None:
    config = resolve_config(_config("tox21", TOX21, "my_fp_trunks:bag"))
    data = load_dataset(config["dataset"])
    labels = make_split(data.n_rows, config["split"]["fractions"], config["split"]["seed"])
    trainer = Trainer(
        data, labels, network_spec(config, tuple(TOX21), "full", 0), torch.device("cpu")
    )
    model = trainer.build_model()
    trainer.task_losses(model, trainer.epoch_batches()[0]).sum().backward()
    assert model.trunk.body.sparse_calls == 1
    assert model.trunk.body.bag.weight.grad is not None


def test_validate_trains_one_step_as_training_does(trunks: Path) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_config(_config("tox21", TOX21, "my_fp_trunks:train_only"))
    message = str(err.value)
    assert "'my_fp_trunks:train_only'" in message and "training step" in message
    assert "dropout schedule missing" in message


def _env(workdir: Path) -> dict:
    return {"PYTHONPATH": os.pathsep.join([str(REPO), str(workdir)])}


@pytest.mark.slow
def test_own_trunk_on_tox21_trains_and_reruns_only_for_its_code(tmp_path: Path) -> None:
    (tmp_path / "my_fp_trunks.py").write_text(TRUNKS)
    write_config(tmp_path, _config("tox21", TOX21, "my_fp_trunks:gated"))
    snakemake(tmp_path, env=_env(tmp_path))
    metrics = pq.read_table(tmp_path / "results" / "metrics.parquet").to_pandas()
    assert set(metrics["task"]) == set(TOX21) and set(metrics["status"]) == {"ok"}
    # An unrelated addition to the trunk's file: nothing to retrain.
    module = tmp_path / "my_fp_trunks.py"
    module.write_text(TRUNKS + "\n\ndef unrelated(input_shape, width):\n    return None\n")
    dry = snakemake(tmp_path, "--dry-run", env=_env(tmp_path))
    assert "Nothing to be done" in dry.stdout + dry.stderr
    # The factory's own code edited: export names the difference, snakemake retrains.
    module.write_text(module.read_text().replace("round(32 * width)", "round(33 * width)"))
    export = subprocess.run(
        [sys.executable, "-m", "pipeline", "export", "--budget", "3", "--weights", "w"],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, **_env(tmp_path)},
    )  # fmt: skip
    assert export.returncode != 0 and "model.trunk_source" in export.stderr, export.stderr
    dry = snakemake(tmp_path, "--dry-run", env=_env(tmp_path))
    assert "train" in dry.stdout and "Nothing to be done" not in dry.stdout + dry.stderr


@pytest.mark.slow
def test_own_sparse_trunk_on_toxcast_trains(tmp_path: Path) -> None:
    (tmp_path / "my_fp_trunks.py").write_text(TRUNKS)
    write_config(tmp_path, _config("toxcast", TOXCAST, "my_fp_trunks:bag", sizes=["full", "half"]))
    snakemake(tmp_path, env=_env(tmp_path))
    metrics = pq.read_table(tmp_path / "results" / "metrics.parquet").to_pandas()
    assert set(metrics["task"]) == set(TOXCAST) and set(metrics["status"]) == {"ok"}
    assert set(metrics["size"]) == {"full", "half"}
