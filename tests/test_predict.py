"""An answer you can load and run (issue 20, item 3): a tiny real Snakemake sweep, then
``taskgroup export --budget B --out DIR``, then ``taskgroup predict`` on the split's test rows,
whose predictions must give back the recorded test losses (rtol 1e-5). The losses are computed
here from the predictions, the raw targets and the training split alone, independently of what
the export recorded about scaling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from torch import nn
from vision_helpers import write_images, write_trunk_module

import pipeline
from pipeline.cli import main
from pipeline.split import read_split
from workflow import snakemake, write_config

pytestmark = pytest.mark.slow

SMALL = {
    "sweep": {"orders": [1], "all_in_one": True, "sizes": ["full"], "seeds": [0]},
    "model": {"hidden": [16]},
    "training": {"epochs": 2, "batch_size": 64, "lr": 0.01},
}


def _run(workdir: Path, dataset: dict, budgets: list[float], **overrides) -> Path:
    config = {**SMALL, "dataset": dataset, "selection": {"budgets": budgets}}
    for key, value in overrides.items():
        config[key] = {**config.get(key, {}), **value}
    write_config(workdir, config)
    snakemake(workdir)
    return workdir / "results"


def _export(workdir: Path, budget: float, monkeypatch, capsys) -> Path:
    monkeypatch.chdir(workdir)
    assert main(["export", "--budget", str(budget), "--out", "answer"]) == 0
    assert "answer.yaml and" in capsys.readouterr().out
    return workdir / "answer"


def _predict(workdir: Path, input_file: str, capsys) -> pd.DataFrame:
    assert main(["predict", "answer", "--input", input_file, "--out", "preds.parquet"]) == 0
    assert "prediction(s)" in capsys.readouterr().out
    return pq.read_table(workdir / "preds.parquet").to_pandas()


def _recorded_test_loss(results: Path) -> dict[tuple[str, str], float]:
    """(network, task) -> test loss at the final epoch, seed 0."""
    m = pq.read_table(results / "metrics.parquet").to_pandas()
    m = m[(m.split == "test") & (m.metric == "loss") & (m.seed == 0) & (m.epoch == m.epochs)]
    return {(n, t): float(v) for n, t, v in zip(m.network, m.task, m.value)}


def _loss(kind: str, predictions: pd.Series, y: np.ndarray, train_y: np.ndarray) -> float:
    """The training loss of one task from its predictions (float64)."""
    labelled = ~np.isnan(y)
    y = y[labelled]
    if kind == "binary":
        p = np.stack(predictions.to_numpy())[labelled]
        return float(np.mean(-(y * np.log(p) + (1 - y) * np.log1p(-p))))
    if kind == "regression":
        # Training standardises regression targets on the train split: its MSE is in those units.
        mean, std = np.nanmean(train_y), np.nanstd(train_y)
        p = predictions.to_numpy()[labelled]
        return float(np.mean(((p - mean) / std - (y - mean) / std) ** 2))
    probs = np.stack(predictions.to_numpy())[labelled]
    return float(np.mean(-np.log(probs[np.arange(y.size), y.astype(int)])))


def _check_losses(preds, answer_dir, results, targets, kinds, labels, test_rows) -> int:
    """Every task of the answer, by its network, reproduces its recorded test loss."""
    answer = yaml.safe_load((answer_dir / "answer.yaml").read_text())
    recorded = _recorded_test_loss(results)
    assert set(preds.task) == set(answer["task_network"])
    assert len(preds) == len(test_rows) * len(answer["task_network"])
    checked = 0
    for task, network in answer["task_network"].items():
        rows = preds[preds.task == task].sort_values("row")
        assert rows.row.tolist() == list(range(len(test_rows)))
        assert set(rows.network) == {network}
        column = "probabilities" if kinds[task] == "multiclass" else "prediction"
        y = targets[task][test_rows]
        train_y = targets[task][labels == "train"]
        loss = _loss(kinds[task], rows[column], y, train_y)
        assert loss == pytest.approx(recorded[(network, task)], rel=1e-5), (task, network)
        checked += 1
    return checked


def test_tox21_answer_predicts_its_recorded_test_losses(tmp_path: Path, monkeypatch, capsys):
    tasks = ["NR-AR", "NR-AhR", "SR-ARE"]
    results = _run(tmp_path, {"name": "tox21", "tasks": tasks}, [1.5, 3.5])
    answer_dir = _export(tmp_path, 1.5, monkeypatch, capsys)
    answer = yaml.safe_load((answer_dir / "answer.yaml").read_text())
    assert set(answer["task_network"]) == set(tasks)
    folder = answer_dir / next(iter(answer["networks"].values()))["path"]
    assert {p.name for p in folder.iterdir()} == {"network.json", "weights.pt", "spec.json"}
    meta = json.loads((folder / "network.json").read_text())
    assert meta["input"]["sparse_binary"] and meta["input"]["shape"] == [1024]
    assert meta["input"]["mean"] is None  # 0/1 fingerprints are not standardised

    data = pipeline_dataset({"name": "tox21"})
    labels = read_split(results / "split.parquet", data.n_rows)
    test_rows = np.flatnonzero(labels == "test")
    np.savez(tmp_path / "test.npz", x=data.features[test_rows])
    preds = _predict(tmp_path, "test.npz", capsys)
    targets = {t: data.targets[:, data.task_index(t)] for t in tasks}
    kinds = dict.fromkeys(tasks, "binary")
    assert _check_losses(preds, answer_dir, results, targets, kinds, labels, test_rows) == 3

    # From Python: an nn.Module whose predict gives the same probabilities.
    net = pipeline.load_network(folder)
    assert isinstance(net, nn.Module)
    got = net.predict(data.features[test_rows])
    task = meta["tasks"][0]["name"]
    written = preds[preds.task == task].sort_values("row").prediction.to_numpy()
    np.testing.assert_array_equal(got[task], written)

    # Wrong input width: one error line naming the shape, no output file.
    np.savez(tmp_path / "bad.npz", x=data.features[:5, :1000])
    code = main(["predict", "answer", "--input", "bad.npz", "--out", "bad.parquet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "error: input: shape (5, 1000), but the network takes (rows, 1024)" in err
    assert not (tmp_path / "bad.parquet").exists()


def pipeline_dataset(config: dict):
    from pipeline.datasets import load_dataset

    return load_dataset(config)


def _own_table(path: Path, n: int = 300) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 6))
    signal = x[:, 0] + 0.5 * x[:, 1]
    binary = (signal + 0.3 * rng.standard_normal(n) > 0).astype(float)
    binary[::7] = np.nan  # some missing labels
    regression = 100.0 + 40.0 * (x[:, 2] - x[:, 3]) + rng.standard_normal(n)  # far from N(0,1)
    classes = np.array(["cat", "dog", "eel"])[np.digitize(x[:, 4], [-0.5, 0.5])]
    frame = pd.DataFrame({f"f{i}": x[:, i] for i in range(6)})
    frame["active"], frame["weight"], frame["species"] = binary, regression, classes
    frame.to_csv(path, index=False)
    ids = np.searchsorted(["cat", "dog", "eel"], classes).astype(float)  # sorted labels -> ids
    return {"x": x, "active": binary, "weight": regression, "species": ids}


def test_own_table_answer_predicts_its_recorded_test_losses(tmp_path: Path, monkeypatch, capsys):
    arrays = _own_table(tmp_path / "mine.csv")
    kinds = {"active": "binary", "weight": "regression", "species": "multiclass"}
    dataset = {"name": "table", "path": "mine.csv", "features": {"prefix": "f"}, "targets": kinds}
    results = _run(tmp_path, dataset, [1.5, 3.5])
    answer_dir = _export(tmp_path, 3.5, monkeypatch, capsys)
    answer = yaml.safe_load((answer_dir / "answer.yaml").read_text())
    meta = {
        task: json.loads((answer_dir / entry["path"] / "network.json").read_text())
        for entry in answer["networks"].values()
        for task in entry["serves"]
    }
    assert meta["species"]["input"]["feature_names"] == [f"f{i}" for i in range(6)]
    species = next(t for t in meta["species"]["tasks"] if t["name"] == "species")
    assert species["class_labels"] == ["cat", "dog", "eel"]

    labels = read_split(results / "split.parquet", 300)
    test_rows = np.flatnonzero(labels == "test")
    # Columns by name: another order, targets and an unrelated column left in.
    frame = pd.read_csv(tmp_path / "mine.csv").iloc[test_rows]
    frame = frame[["species", "f5", "f3", "f4", "f0", "f2", "f1", "weight"]]
    frame.to_csv(tmp_path / "new.csv", index=False)
    preds = _predict(tmp_path, "new.csv", capsys)
    assert _check_losses(preds, answer_dir, results, arrays, kinds, labels, test_rows) == 3
    classes = preds[preds.task == "species"]
    ids = np.stack(classes.probabilities.to_numpy()).argmax(axis=1)
    assert (classes.prediction.to_numpy() == ids).all()
    assert classes.label.tolist() == [["cat", "dog", "eel"][i] for i in ids]
    assert preds[preds.task != "species"].label.isna().all()
    # The regression is in the target's units (~100), not standardised.
    assert preds[preds.task == "weight"].prediction.mean() == pytest.approx(100, abs=30)

    # A missing feature column is named, in one line.
    frame.drop(columns=["f3"]).to_csv(tmp_path / "short.csv", index=False)
    code = main(["predict", "answer", "--input", "short.csv", "--out", "bad.parquet"])
    err = capsys.readouterr().err
    assert code == 2 and "error: input: feature column(s) 'f3' missing" in err
    assert not (tmp_path / "bad.parquet").exists()

    # Parquet reads like CSV.
    frame.to_parquet(tmp_path / "new.parquet")
    assert main(["predict", "answer", "--input", "new.parquet", "--out", "p2.parquet"]) == 0
    again = pq.read_table(tmp_path / "p2.parquet").to_pandas()
    pd.testing.assert_frame_equal(again, preds)


def test_images_with_own_trunk_predict_their_recorded_test_losses(
    tmp_path: Path, monkeypatch, capsys
):
    arrays = write_images(tmp_path / "raw.npz", n=160, label=True)
    arrays["bright"] = (10.0 * arrays["x"].mean(axis=(1, 2, 3)) + 5.0).astype(np.float64)
    keep = ("x", "label", "bright", "depth")
    np.savez(tmp_path / "images.npz", **{k: arrays[k] for k in keep})
    write_trunk_module(tmp_path)
    kinds = {"label": "binary", "bright": "regression"}
    dataset = {
        "name": "arrays", "path": "images.npz",
        "targets": {**kinds, "depth": "dense_regression"},
    }  # fmt: skip
    results = _run(tmp_path, dataset, [2.5, 3.5], model={"trunk": "my_trunks:conv", "hidden": [16]})
    answer_dir = _export(tmp_path, 3.5, monkeypatch, capsys)
    answer = yaml.safe_load((answer_dir / "answer.yaml").read_text())
    depth_entry = answer["networks"][answer["task_network"]["depth"]]
    folder = answer_dir / depth_entry["path"]
    meta = json.loads((folder / "network.json").read_text())
    assert meta["trunk"]["factory"] == "my_trunks:conv"
    assert meta["input"]["shape"] == [3, 16, 16] and len(meta["input"]["mean"]) == 3

    labels = read_split(results / "split.parquet", 160)
    test_rows = np.flatnonzero(labels == "test")
    np.savez(tmp_path / "test.npz", x=arrays["x"][test_rows])
    assert main(["predict", "answer", "--input", "test.npz", "--out", "preds.parquet"]) == 0
    assert "dense task(s) ['depth'] not written" in capsys.readouterr().err
    preds = pq.read_table(tmp_path / "preds.parquet").to_pandas()
    vector = {t: n for t, n in answer["task_network"].items() if t != "depth"}
    answer_vector = {**answer, "task_network": vector}
    (tmp_path / "vector").mkdir()
    (tmp_path / "vector" / "answer.yaml").write_text(yaml.safe_dump(answer_vector))
    checked = _check_losses(preds, tmp_path / "vector", results, arrays, kinds, labels, test_rows)
    assert checked == 2

    # The dense task from Python: per-pixel depth in its own units; its L1 loss (training's, in
    # train-split-standardised units) as recorded.
    depth = pipeline.load_network(folder).predict(arrays["x"][test_rows])["depth"]
    assert depth.shape == (test_rows.size, 16, 16)
    y = arrays["depth"][test_rows].astype(np.float64)
    std = float(np.nanstd(arrays["depth"][labels == "train"].astype(np.float32)))
    labelled = ~np.isnan(y)
    loss = np.abs(depth - y)[labelled].mean() / std
    recorded = _recorded_test_loss(results)[(answer["task_network"]["depth"], "depth")]
    assert loss == pytest.approx(recorded, rel=1e-5)

    # Images of another size: one line naming the shape.
    np.savez(tmp_path / "small.npz", x=arrays["x"][:4, :, :8, :8])
    assert main(["predict", "answer", "--input", "small.npz", "--out", "bad.parquet"]) == 2
    assert "shape (4, 3, 8, 8), but the network takes (rows, 3, 16, 16)" in capsys.readouterr().err
