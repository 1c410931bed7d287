"""Dense tasks and your own trunk (issue #15): per-pixel losses and metrics against slow
references, the arrays dataset, trunk validation, FLOP-counted cost, determinism, TAG's
lookahead over a conv network."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from vision_helpers import TASKS, write_images, write_trunk_module

from pipeline.cli import main
from pipeline.config import ConfigError, resolve_config
from pipeline.datasets import load_dataset, network_dataset
from pipeline.metrics import DenseScore, dense_loss
from pipeline.packing import packable
from pipeline.split import make_split
from pipeline.sweep import network_spec
from pipeline.training import Trainer, train_network

CPU = torch.device("cpu")


# ---- losses and metrics against explicit loops over pixels --------------------------------
def _pixels(shape):
    b, h, w = shape
    return [(i, r, c) for i in range(b) for r in range(h) for c in range(w)]


def test_segmentation_loss_and_miou_match_a_pixel_loop() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 5, 6, generator=g)
    target = torch.randint(0, 4, (3, 5, 6), generator=g)
    target[0, :2] = -1
    target[2, :, 3] = -1
    losses, confusion = [], np.zeros((4, 4))
    for i, r, c in _pixels(target.shape):
        y = int(target[i, r, c])
        if y < 0:
            continue
        z = logits[i, :, r, c].double()
        losses.append(float(torch.logsumexp(z, 0) - z[y]))
        confusion[y, int(z.argmax())] += 1
    ious = []
    for k in range(4):
        union = confusion[k].sum() + confusion[:, k].sum() - confusion[k, k]
        if union:
            ious.append(confusion[k, k] / union)
    assert float(dense_loss(logits, target, "segmentation")) == pytest.approx(np.mean(losses))
    score = DenseScore("segmentation", 4)
    score.add(logits[:2], target[:2])  # two chunks accumulate like one
    score.add(logits[2:], target[2:])
    loss, metric = score.result()
    assert loss == pytest.approx(np.mean(losses)) and metric == pytest.approx(np.mean(ious))


def test_dense_regression_l1_and_mae_in_original_units() -> None:
    g = torch.Generator().manual_seed(1)
    out = torch.randn(2, 1, 4, 4, generator=g)
    target = torch.randn(2, 4, 4, generator=g)
    target[1, 2:, :] = float("nan")
    errors = [
        abs(float(out[i, 0, r, c] - target[i, r, c]))
        for i, r, c in _pixels(target.shape)
        if not math.isnan(float(target[i, r, c]))
    ]
    assert float(dense_loss(out, target, "dense_regression")) == pytest.approx(np.mean(errors))
    score = DenseScore("dense_regression", scale=2.5)
    score.add(out, target)
    loss, mae = score.result()
    assert loss == pytest.approx(np.mean(errors)) and mae == pytest.approx(2.5 * np.mean(errors))


def test_normals_cosine_loss_and_angular_error() -> None:
    g = torch.Generator().manual_seed(2)
    out = torch.randn(2, 3, 3, 4, generator=g)
    target = torch.randn(2, 3, 3, 4, generator=g)
    target[0, 1, 0, 0] = float("nan")  # one NaN component: the pixel is missing
    target[1, :, 2, :] = float("nan")
    losses, angles = [], []
    for i, r, c in _pixels((2, 3, 4)):
        t = target[i, :, r, c].double()
        if torch.isnan(t).any():
            continue
        o = out[i, :, r, c].double()
        cos = float(o @ t / (o.norm() * t.norm()))
        losses.append(1 - cos)
        angles.append(math.degrees(math.acos(max(-1.0, min(1.0, cos)))))
    assert float(dense_loss(out, target, "normals")) == pytest.approx(np.mean(losses), rel=1e-5)
    score = DenseScore("normals")
    score.add(out, target)
    loss, angle = score.result()
    assert loss == pytest.approx(np.mean(losses), rel=1e-5)
    assert angle == pytest.approx(np.mean(angles), rel=1e-6)


def test_no_labelled_pixel_gives_zero_loss_with_a_graph_and_nan_scores() -> None:
    out = torch.randn(1, 1, 2, 2, requires_grad=True)
    loss = dense_loss(out, torch.full((1, 2, 2), float("nan")), "dense_regression")
    loss.backward()
    assert loss.item() == 0.0 and out.grad is not None
    assert all(math.isnan(v) for v in DenseScore("dense_regression").result())


# ---- data, trunk and cost through the real config path -------------------------------------
@pytest.fixture
def images(tmp_path: Path, monkeypatch) -> Path:
    write_images(tmp_path / "images.npz", label=True)
    write_trunk_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _config(tmp_path: Path, trunk: str = "my_trunks:conv", label: bool = True, **model) -> dict:
    targets = {**TASKS, **({"label": "binary"} if label else {})}
    return {
        "dataset": {"name": "arrays", "path": str(tmp_path / "images.npz"), "targets": targets},
        "model": {"trunk": trunk, "head_hidden": [4], **model},
        "training": {"epochs": 2, "batch_size": 16, "lr": 0.01},
        "sweep": {"orders": [1], "sizes": ["full", "half"]},
    }


def _train(config: dict, tasks, size: str = "full"):
    data = load_dataset(config["dataset"])
    labels = make_split(data.n_rows, config["split"]["fractions"], config["split"]["seed"])
    return train_network(data, labels, network_spec(config, tuple(tasks), size, 0), CPU)


def test_user_trunk_costs_come_from_flops_and_training_is_deterministic(images: Path) -> None:
    config = resolve_config(_config(images))
    single = _train(config, ["depth"]).to_pandas()
    again = _train(config, ["depth"]).to_pandas()
    half = _train(config, ["depth"], "half").to_pandas()
    everything = _train(config, config["dataset"]["tasks"]).to_pandas()
    assert single["cost"].iloc[0] == pytest.approx(1.0)
    assert 0.4 < half["cost"].iloc[0] < 0.6  # the factory's FLOPs are linear in width
    assert everything["cost"].iloc[0] > 1.2
    assert single["macs"].iloc[0] > 16 * 16 * 3 * 16 * 9  # at least the trunk's conv
    cols = ["task", "split", "epoch", "metric", "value"]
    assert single[cols].equals(again[cols])  # same config and seed: same weights, metrics
    final = everything[(everything.epoch == 2) & (everything.split == "val")]
    metrics = dict(zip(final.task + "/" + final.metric, final.value))
    assert set(metrics) >= {"depth/mae", "seg/miou", "normals/angular_error", "label/roc_auc"}
    assert 0 <= metrics["seg/miou"] <= 1 and 0 <= metrics["normals/angular_error"] <= 180
    assert np.isfinite(list(metrics.values())).all()
    # Per-sample label counts: the sample without normals is not counted.
    counts = everything[(everything.metric == "loss") & (everything.epoch == 1)]
    n = counts.groupby("task").n_labelled.sum()
    assert n["normals"] == n["depth"] - 1


def test_spec_carries_trunk_and_content_hashes_only_when_needed(images: Path) -> None:
    config = resolve_config(_config(images))
    spec = network_spec(config, ("depth",), "full", 0)
    assert spec["model"]["trunk"] == "my_trunks:conv"
    assert set(spec["dataset"]["targets"]) == {"depth"} and "content" in spec["dataset"]
    assert not packable(spec)
    plain = resolve_config({"dataset": {"name": "synthetic"}}, check_data=False)
    assert "trunk" not in network_spec(plain, ("c0t0",), "full", 0)["model"]
    # Editing one task's labels changes that task's spec only.
    before = (
        network_dataset(config["dataset"], ("depth",)),
        network_dataset(config["dataset"], ("seg",)),
    )
    arrays = dict(np.load(images / "images.npz"))
    arrays["seg"][0, 5, 5] = (arrays["seg"][0, 5, 5] + 1) % 3
    np.savez(images / "images.npz", **arrays)
    after = (
        network_dataset(config["dataset"], ("depth",)),
        network_dataset(config["dataset"], ("seg",)),
    )
    assert before[0] == after[0] and before[1] != after[1]
    # Adding to the trunk's file what the factory does not use retrains nothing (item 6)...
    module = images / "my_trunks.py"
    module.write_text(module.read_text() + "\n\ndef unrelated(input_shape, width):\n    pass\n")
    assert network_spec(config, ("depth",), "full", 0) == spec
    # ... editing the factory's code retrains what is built on it.
    module.write_text(module.read_text().replace("round(16 * width)", "round(17 * width)"))
    edited = network_spec(config, ("depth",), "full", 0)
    assert edited["model"]["trunk_source"] != spec["model"]["trunk_source"]
    assert {**edited["model"], "trunk_source": None} == {**spec["model"], "trunk_source": None}


def test_an_edited_or_moved_trunk_module_is_loaded_as_its_file_now_reads(
    images: Path, tmp_path_factory, monkeypatch
) -> None:
    """One process, two reads: the trunk built is the code whose hash the spec carries, not
    the first import sys.modules kept (a notebook or export after other work)."""
    from pipeline.models.user import load_factory, trunk_source_hash

    def channels(name: str = "my_trunks:conv") -> int:
        return load_factory(name)((3, 16, 16), 1.0)[0].out_channels

    monkeypatch.chdir(images)
    assert channels() == 16
    hashed = trunk_source_hash("my_trunks:conv")
    module = images / "my_trunks.py"
    module.write_text(module.read_text().replace("round(16 * width)", "round(17 * width)"))
    assert channels() == 17 and trunk_source_hash("my_trunks:conv") != hashed
    # Another working directory with its own my_trunks.py (another project, the next test)
    # is read from there, before what sys.path holds.
    other = tmp_path_factory.mktemp("other")
    write_trunk_module(other)
    monkeypatch.chdir(other)
    assert channels() == 16 and trunk_source_hash("my_trunks:conv") == hashed
    # A broken edit leaves no half-imported module behind: the next good read works.
    (other / "my_trunks.py").write_text("raise RuntimeError('half-written')\n")
    with pytest.raises(Exception, match="half-written"):
        load_factory("my_trunks:conv")
    write_trunk_module(other)
    assert channels() == 16


@pytest.mark.parametrize(
    ("trunk", "label", "expected"),
    [
        ("no_such_module:conv", True, "cannot import module 'no_such_module'"),
        ("my_trunks:missing", True, "has no 'missing'"),
        ("my_trunks:broken", True, "out of coffee"),
        ("my_trunks:three_d", True, "expected (batch, features) or (batch, channels, H, W)"),
        ("my_trunks:no_parameters", True, "no trainable parameters"),
        ("my_trunks:flat", True, "dense tasks ['depth', 'seg', 'normals'] need"),
    ],
)
def test_bad_trunks_are_refused_at_validation_naming_them(
    images: Path, trunk: str, label: bool, expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_config(_config(images, trunk, label))
    assert trunk in str(err.value) and expected in str(err.value)


def test_spatial_trunk_on_a_table_and_invalid_combinations_are_refused(
    images: Path, tmp_path: Path, capsys
) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((150, 5)).astype(np.float32)
    np.savez(tmp_path / "table.npz", x=x, y=(x[:, 0] > 0).astype(float), r=x[:, 1])
    table = {"name": "arrays", "path": str(tmp_path / "table.npz"),
             "targets": {"y": "binary", "r": "regression"}}  # fmt: skip
    flat = resolve_config(
        {"dataset": table, "model": {"trunk": "my_trunks:flat"}, "sweep": {"orders": [1]}}
    )
    assert _train(flat, ["y", "r"]).num_rows > 0  # a vector trunk on a table trains
    one_label = {**table, "path": str(images / "images.npz"), "targets": {"label": "binary"}}
    spatial = {"dataset": one_label, "model": {"trunk": "my_trunks:conv"},
               "sweep": {"orders": [1]}}  # fmt: skip
    with pytest.raises(ConfigError, match="'my_trunks:conv'.*has no dense task"):
        resolve_config(spatial)
    with pytest.raises(ConfigError, match="conv needs images"):
        resolve_config({"dataset": table, "model": {"trunk": "conv"}, "sweep": {"orders": [1]}})
    with pytest.raises(ConfigError, match="mlp needs inputs"):
        resolve_config({**_config(images), "model": {"trunk": "mlp"}})
    with pytest.raises(
        ConfigError,
        match=r"\['adashare'\] cannot be built over.*needs model.trunk mlp.*identity path",
    ):
        resolve_config({**_config(images), "sweep": {"methods": [
            {"architecture": "adashare", "weighting": "equal"}]}})  # fmt: skip
    # `taskgroup validate` is the same check, naming the trunk.
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_config(images, "my_trunks:no_parameters")))
    assert main(["validate", "--configfile", str(path)]) == 2
    assert "'my_trunks:no_parameters'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        ({"nope": "binary"}, "array 'nope' is not in"),
        ({"seg": {"type": "segmentation", "classes": 2}}, "class id 2, but classes is 2"),
        ({"depth": "normals"}, "a normals task needs (N, 3, H, W)"),
        ({"label": "segmentation"}, "a segmentation task needs (N, H, W)"),
    ],
)
def test_arrays_errors_name_the_key_and_array(images: Path, targets: dict, expected: str) -> None:
    config = {"dataset": {"name": "arrays", "path": str(images / "images.npz"),
                          "targets": targets}, "model": {"trunk": "my_trunks:conv"}}  # fmt: skip
    with pytest.raises(ConfigError) as err:
        resolve_config(config)
    assert expected in str(err.value) and "dataset." in str(err.value)


def test_schema_refuses_unknown_task_type_and_keys(images: Path) -> None:
    config = _config(images)
    config["dataset"]["targets"]["depth"] = "depthish"
    with pytest.raises(ConfigError, match="dataset.targets.depth"):
        resolve_config(config)
    config = _config(images)
    config["dataset"]["shape"] = [3, 16, 16]
    with pytest.raises(ConfigError, match="dataset.shape: unknown key"):
        resolve_config(config)


@pytest.mark.parametrize("weighting", ["uncertainty", "dwa", "gradnorm"])
def test_every_weighting_trains_a_dense_network(images: Path, weighting: str) -> None:
    training = {"epochs": 1, "batch_size": 32, "weighting": weighting}
    config = resolve_config({**_config(images, "my_trunks:deep"), "training": training})
    table = _train(config, config["dataset"]["tasks"]).to_pandas()
    weights = table[table.metric == "task_weight"]
    assert len(weights) == 4 and table.status.iloc[0] == "ok"
    assert np.isfinite(table[table.metric == "loss"].value).all()


def test_lookahead_generic_path_on_a_dense_network(images: Path) -> None:
    from pipeline.affinity.lookahead import AffinityRecorder

    config = resolve_config(_config(images, "my_trunks:deep"))
    data = load_dataset(config["dataset"])
    labels = make_split(data.n_rows, config["split"]["fractions"], 0)
    spec = network_spec(config, tuple(config["dataset"]["tasks"]), "full", 0)
    trainer = Trainer(data, labels, spec, CPU)
    model = trainer.build_model()
    recorder = AffinityRecorder(trainer, every=1, lookahead_lr=0.01)
    batch = trainer.inputs.rows["train"][:16]
    value = recorder.step_affinity(model, batch)
    # Reference: one task's SGD step on the trunk at a time, all losses before and after.
    before = trainer.task_losses(model, batch).detach()
    for i in range(value.shape[0]):
        probe = trainer.build_model()
        probe.load_state_dict(model.state_dict())
        loss = trainer.task_losses(probe, batch)[i]
        grads = torch.autograd.grad(loss, probe.shared_parameters())
        with torch.no_grad():
            for p, g in zip(probe.shared_parameters(), grads):
                p -= 0.01 * g
            after = trainer.task_losses(probe, batch)
        expected = 1 - after.double() / before.double()
        assert torch.allclose(value[i], expected, atol=1e-4), (i, value[i], expected)
