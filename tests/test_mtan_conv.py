"""MTAN over the conv trunk (issue #15 item 5): the paper's setting, per-task attention over an
encoder-decoder's stages (pipeline/models/mtan.py, MTAN). Tiny 16x16 images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from vision_helpers import TASKS, write_images, write_trunk_module

from pipeline.config import ConfigError, resolve_config
from pipeline.datasets import load_dataset
from pipeline.models import (
    ARCHITECTURES,
    ModelShape,
    build_model,
    network_cost,
    widths_for_size,
)
from pipeline.models.mtan import MTAN
from pipeline.split import make_split
from pipeline.sweep import network_spec
from pipeline.training import Trainer

CPU = torch.device("cpu")
SHAPE = ModelShape(
    in_features=3, hidden=(8, 16, 16), head_hidden=(4,), input_shape=(3, 15, 13),
    trunk="conv", label_size=(15, 13), reference_dense=True,
)  # fmt: skip
DIMS, DENSE = [3, 1, 2], [True, True, False]  # segmentation, depth, a vector task


def _model(seed: int = 0, widths=SHAPE.hidden) -> MTAN:
    return build_model("mtan", SHAPE, widths, DIMS, torch.Generator().manual_seed(seed), DENSE)


def _x(seed: int = 1) -> torch.Tensor:
    return torch.randn(2, 3, 15, 13, generator=torch.Generator().manual_seed(seed))


def test_outputs_masks_and_gradients_reach_trunk_and_every_task() -> None:
    model = _model()
    assert isinstance(model, MTAN) and model.spatial and ARCHITECTURES["mtan"] is MTAN
    outputs = model(_x())
    assert [tuple(o.shape) for o in outputs] == [(2, 3, 15, 13), (2, 1, 15, 13), (2, 2)]
    masks = model.masks(_x())
    stages = model.trunk.forward_stages(_x())
    assert len(masks) == 3 and all(len(m) == len(stages) == 5 for m in masks)
    for task_masks in masks:
        for mask, h in zip(task_masks, stages):
            assert mask.shape == h.shape and ((mask > 0) & (mask < 1)).all()
    sum(o.square().mean() for o in outputs).backward()
    assert {id(p) for p in model.shared_parameters()} == {id(p) for p in model.trunk.parameters()}
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_weights_and_outputs_come_from_the_generator() -> None:
    a, b, c = _model(0), _model(0), _model(1)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert all(torch.equal(u, v) for u, v in zip(a(_x()), b(_x())))
    assert not torch.equal(a.attention[0][1].up.weight, c.attention[0][1].up.weight)


def test_cost_is_counted_and_half_width_halves_it() -> None:
    half = widths_for_size("mtan", SHAPE, "half")
    assert half[0] < SHAPE.hidden[0]
    _, single = network_cost("mtan", SHAPE, SHAPE.hidden, [1], [True])
    _, halved = network_cost("mtan", SHAPE, half, [1], [True])
    macs, everything = network_cost("mtan", SHAPE, SHAPE.hidden, DIMS, DENSE)
    assert single == pytest.approx(1.0) and 0.4 < halved < 0.6 and everything > 1.5
    hard, _ = network_cost("hard_sharing", SHAPE, SHAPE.hidden, DIMS, DENSE)
    assert macs > hard  # attention and the shared f_j are counted


# ---- through the config and the training loop ------------------------------------------------
@pytest.fixture
def images(tmp_path: Path, monkeypatch) -> Path:
    write_images(tmp_path / "images.npz", n=100, label=True)
    write_trunk_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


# A dense and a vector task (the weighting tests: two tasks keep them fast), or all four.
TWO = {"depth": TASKS["depth"], "label": "binary"}
ALL = {**TASKS, "label": "binary"}


def _config(
    images: Path, trunk: str = "conv", weighting: str = "equal", epochs: int = 2, targets=TWO
) -> dict:
    return {
        "dataset": {"name": "arrays", "path": str(images / "images.npz"), "targets": targets},
        "model": {"architecture": "mtan", "trunk": trunk, "hidden": [4, 8], "head_hidden": [4]},
        "training": {"epochs": epochs, "batch_size": 32, "lr": 0.01, "weighting": weighting},
        "sweep": {"orders": [1], "sizes": ["full", "half"]},
    }  # fmt: skip


def _trainers(config: dict) -> tuple[Trainer, Trainer]:
    data = load_dataset(config["dataset"])
    labels = make_split(data.n_rows, config["split"]["fractions"], config["split"]["seed"])
    spec = network_spec(config, tuple(config["dataset"]["tasks"]), "full", 0)
    return Trainer(data, labels, spec, CPU), Trainer(data, labels, spec, CPU)


@pytest.mark.parametrize("weighting", ["equal", "uncertainty", "dwa", "gradnorm"])
def test_every_weighting_trains_the_trunk(images: Path, weighting: str) -> None:
    trainer, fresh = _trainers(resolve_config(_config(images, weighting=weighting)))
    table = trainer.fit().to_pandas()
    assert table.status.iloc[0] == "ok" and set(table.epoch) >= {1, 2}
    assert np.isfinite(table[table.metric == "loss"].value).all()
    assert table.cost.iloc[0] > 1.0  # two tasks' attention and heads
    trained, initial = trainer.model.trunk.state_dict(), fresh.build_model().trunk.state_dict()
    for name, value in trained.items():
        assert not torch.equal(value, initial[name]), name


def test_validation_accepts_conv_and_staged_user_trunks_only(images: Path) -> None:
    assert resolve_config(_config(images))["model"]["architecture"] == "mtan"
    with pytest.raises(ConfigError) as err:
        resolve_config(_config(images, "my_trunks:conv"))
    assert "'my_trunks:conv'" in str(err.value) and "forward_stages" in str(err.value)
    staged = resolve_config(_config(images, "my_trunks:staged", epochs=1))
    trainer, _ = _trainers(staged)
    table = trainer.fit().to_pandas()
    assert table.status.iloc[0] == "ok" and np.isfinite(table[table.metric == "loss"].value).all()


def test_lookahead_generic_path_over_mtan_conv(images: Path) -> None:
    from pipeline.affinity.lookahead import AffinityRecorder

    trainer, _ = _trainers(resolve_config(_config(images, targets=ALL)))
    model = trainer.build_model()
    recorder = AffinityRecorder(trainer, every=1, lookahead_lr=0.01)
    value = recorder.step_affinity(model, trainer.inputs.rows["train"][:16])
    assert value.shape == (4, 4) and torch.isfinite(value).all()
