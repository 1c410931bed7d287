"""taskgroup export: the grouping at a budget as YAML/JSON, and the chosen networks' weights
retrained deterministically from their recorded specs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline.cli import main
from pipeline.collect import collect
from pipeline.config import resolve_config
from pipeline.datasets import load_dataset
from pipeline.models import ModelShape, build_model, widths_for_size
from pipeline.schema import METRICS, write_table
from pipeline.split import make_split
from pipeline.sweep import Network, network_spec
from pipeline.training import resolve_device, train_network

REPO = Path(__file__).resolve().parent.parent

CONFIG = {
    "dataset": {"name": "synthetic", "rows": 300, "features": 8, "clusters": 2,
                "tasks_per_cluster": 2, "tasks": ["c0t0", "c0t1", "c1t0"]},
    "sweep": {"orders": [1, 2], "sizes": ["full"]},
    "model": {"hidden": [16, 16]},
    "training": {"epochs": 2, "batch_size": 64},
}  # fmt: skip
CHOSEN = [Network(("c0t0", "c0t1"), "full"), Network(("c1t0",), "full")]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """Two trained networks, collected, and a groupings table choosing them at budget 2."""
    root = tmp_path_factory.mktemp("export")
    results = root / "results"
    config = resolve_config(CONFIG)
    data = load_dataset(config["dataset"])
    labels = make_split(data.n_rows, config["split"]["fractions"], config["split"]["seed"])
    files = []
    for net in CHOSEN:
        spec = network_spec(config, net.tasks, net.size, 0)
        table = train_network(data, labels, spec, resolve_device())
        path = results / "runs" / "hard_sharing-equal" / "seed0" / net.size / f"{net.stem}.parquet"
        write_table(table, path, METRICS)
        files.append(str(path))
    collect(files, results / "metrics.parquet", results / "sweep.duckdb",
            results / "networks.parquet")  # fmt: skip
    serving = {"c0t0": CHOSEN[0].name, "c0t1": CHOSEN[0].name, "c1t0": CHOSEN[1].name}
    base = {"architecture": "hard_sharing", "weighting": "equal", "objective": "sum",
            "epoch": "final", "budget": 2.0, "status": "ok", "note": None,
            "networks": [n.name for n in CHOSEN], "cost": 2.05, "val_total": 1.5,
            "test_total": 1.6}  # fmt: skip
    rows = [{**base, "method": "optimal", "task": t, "network": n} for t, n in serving.items()]
    infeasible = {"budget": 1.0, "status": "infeasible", "note": "nothing fits", "networks": None}
    rows.append({**base, **infeasible, "method": "optimal", "task": None, "network": None})
    pd.DataFrame(rows).to_parquet(results / "groupings.parquet")
    (root / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    return results


def test_export_writes_the_grouping(results: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "grouping.yaml"
    assert main(["export", "--budget", "2", "--results", str(results), "--out", str(out)]) == 0
    grouping = yaml.safe_load(out.read_text())
    assert grouping["budget"] == 2.0 and grouping["selection_method"] == "optimal"
    assert grouping["task_network"] == {"c0t0": "c0t0+c0t1@full", "c0t1": "c0t0+c0t1@full",
                                        "c1t0": "c1t0@full"}  # fmt: skip
    pair = grouping["networks"][0]
    assert pair["tasks"] == ["c0t0", "c0t1"] and pair["serves"] == ["c0t0", "c0t1"]
    assert pair["files"][0].endswith("full/c0t0+c0t1.parquet")
    assert "2 network(s) serving 3 task(s)" in capsys.readouterr().out
    # JSON by suffix; the same content.
    assert main(["export", "--budget", "2", "--results", str(results),
                 "--out", str(tmp_path / "g.json")]) == 0  # fmt: skip
    assert json.loads((tmp_path / "g.json").read_text())["task_network"] == grouping["task_network"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--budget", "3"], r"no budget 3 in the results; budgets: \[1.0, 2.0\]"),
        (["--budget", "1"], "optimal at budget 1 is infeasible: nothing fits"),
        (
            ["--budget", "2", "--method", "hoa"],
            r"selection method 'hoa' unknown; known: \['optimal'\]",
        ),
    ],
)
def test_export_names_what_is_missing(results: Path, tmp_path, capsys, argv, message) -> None:
    code = main(["export", *argv, "--results", str(results), "--out", str(tmp_path / "g.yaml")])
    assert code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "g.yaml").exists()


def test_export_weights_retrains_the_chosen_networks_exactly(
    results: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(results.parent)
    out = tmp_path / "grouping.yaml"
    weights = tmp_path / "weights"
    assert main(["export", "--budget", "2", "--results", str(results), "--out", str(out),
                 "--weights", str(weights)]) == 0  # fmt: skip
    grouping = yaml.safe_load(out.read_text())
    saved = grouping["networks"][0]["weights"][0]
    assert saved == str(weights / "hard_sharing-equal/seed0/full/c0t0+c0t1.pt")
    state = torch.load(saved, weights_only=True)
    # The weights load into the architecture the spec builds (2 heads on a 16-16 trunk).
    data = load_dataset(CONFIG["dataset"])
    shape = ModelShape(8, (16, 16), (), data.binary_features)
    model = build_model("hard_sharing", shape, widths_for_size("hard_sharing", shape, "full"),
                        [1, 1], torch.Generator())  # fmt: skip
    model.load_state_dict(state)
    assert sum(p.numel() for p in model.parameters()) == 8 * 16 + 16 + 16 * 16 + 16 + 2 * 17
    assert len(list(weights.rglob("*.pt"))) == 2


def test_export_weights_refuses_a_changed_config(results: Path, tmp_path: Path, capsys) -> None:
    config = {**CONFIG, "training": {**CONFIG["training"], "lr": 0.1}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    code = main(["export", "--budget", "2", "--results", str(results), "--out",
                 str(tmp_path / "g.yaml"), "--weights", str(tmp_path / "w"),
                 "--configfile", str(tmp_path / "c.yaml")])  # fmt: skip
    assert code == 2
    assert "differs from the one these results were trained with" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_export_answer_folder_loads_and_predicts(results: Path, tmp_path: Path, monkeypatch):
    """--out DIR (no .yaml/.json): answer.yaml + one folder per network; predict reproduces
    the recorded test losses of the regression tasks from the test rows' raw features."""
    import subprocess
    import sys

    from pipeline import load_network

    monkeypatch.chdir(results.parent)
    out = tmp_path / "answer"
    assert main(["export", "--budget", "2", "--results", str(results), "--out", str(out)]) == 0
    answer = yaml.safe_load((out / "answer.yaml").read_text())
    assert answer["format"] == "taskgroup-answer/1" and answer["budget"] == 2.0
    assert answer["task_network"]["c1t0"] == "c1t0@full"
    pair = answer["networks"]["c0t0+c0t1@full"]
    assert pair["path"] == "networks/full/c0t0+c0t1" and pair["seed"] == 0
    assert not list(tmp_path.glob(".answer.*"))  # no staging folder left behind

    config = resolve_config(CONFIG)
    data = load_dataset(config["dataset"])
    labels = make_split(data.n_rows, config["split"]["fractions"], config["split"]["seed"])
    test = labels == "test"
    np.savez(tmp_path / "test.npz", x=data.features[test])
    preds = tmp_path / "p.parquet"
    assert main(["predict", str(out), "--input", str(tmp_path / "test.npz"),
                 "--out", str(preds)]) == 0  # fmt: skip
    frame = pd.read_parquet(preds)
    metrics = pd.read_parquet(results / "metrics.parquet")
    final = metrics[(metrics.split == "test") & (metrics.metric == "loss") & (metrics.epoch == 2)]
    for task, network in answer["task_network"].items():
        got = frame[frame.task == task].sort_values("row")
        assert set(got.network) == {network}
        y = data.targets[:, data.task_index(task)]
        std = np.nanstd(y[labels == "train"])
        loss = np.nanmean(((got.prediction.to_numpy() - y[test]) / std) ** 2)
        recorded = final[(final.network == network) & (final.task == task)].value.item()
        assert loss == pytest.approx(recorded, rel=1e-5)
    # One network's folder predicts alone too, and load_network is an nn.Module.
    net = load_network(out / pair["path"])
    assert isinstance(net, torch.nn.Module) and net.tasks == ["c0t0", "c0t1"]
    one = net.predict(data.features[test])
    got = frame[frame.task == "c0t0"].sort_values("row").prediction.to_numpy()
    np.testing.assert_array_equal(one["c0t0"], got)

    bad = data.features[test].copy()
    bad[3, 2] = np.nan
    with pytest.raises(
        ValueError, match=r"input: NaN or inf values in row\(s\) \[3\], feature column"
    ):
        net.predict(bad)

    # A source whose constant column the dataset dropped (dataset.constant_features): the
    # predictor takes the source's columns and drops the same one (its recorded positions).
    import shutil

    dropped = tmp_path / "dropped"
    shutil.copytree(out / pair["path"], dropped)
    meta = json.loads((dropped / "network.json").read_text())
    meta["input"].update(feature_indices=[0, 1, 2, 3, 5, 6, 7, 8], source_width=9)
    (dropped / "network.json").write_text(json.dumps(meta))
    source = np.insert(data.features[test], 4, 7.0, axis=1)
    np.testing.assert_array_equal(load_network(dropped).predict(source)["c0t0"], got)

    # A seed the networks were not trained with is named; nothing is left behind.
    assert main(["export", "--budget", "2", "--results", str(results), "--out",
                 str(tmp_path / "s"), "--seed", "5"]) == 2  # fmt: skip
    assert not (tmp_path / "s").exists() and not list(tmp_path.glob(".s.*"))

    # --weights belongs to the grouping file; an answer folder has its own.
    assert main(["export", "--budget", "2", "--results", str(results), "--out",
                 str(tmp_path / "w"), "--weights", str(tmp_path / "w2")]) == 2  # fmt: skip
    assert not (tmp_path / "w").exists() and not (tmp_path / "w2").exists()

    # A second export replaces the first whole; a folder that is not an export is refused.
    assert main(["export", "--budget", "2", "--results", str(results), "--out", str(out)]) == 0
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["export", "--budget", "2", "--results", str(results), "--out", str(other)]) == 2
    assert (other / "keep.txt").read_text() == "mine" and len(list(other.iterdir())) == 1

    # `import pipeline` stays cheap: load_network is imported on first use.
    code = "import sys, pipeline; assert 'torch' not in sys.modules; pipeline.load_network"
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(REPO)})


def test_predict_names_a_bad_folder_or_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty"), "--input", "x.csv"]) == 2
    assert "no answer.yaml" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("architecture", "weighting", "size"),
    [
        ("mtan", "uncertainty", "full"),
        ("adashare", "equal", "full"),
        ("hard_sharing", "dwa", "half"),
    ],
)
def test_every_architecture_exports_a_loadable_network(
    tmp_path: Path, architecture: str, weighting: str, size: str
) -> None:
    """Each architecture's trained state (AdaShare: its fixed policy) loads into the model
    build_model rebuilds from the recorded arguments and gives the recorded test losses (the
    export's own check, which raises otherwise)."""
    from pipeline.export import _FinalWeights, _write_network
    from pipeline.training import Trainer

    config = resolve_config({**CONFIG, "training": {**CONFIG["training"], "epochs": 3}})
    data = load_dataset(config["dataset"])
    labels = make_split(data.n_rows, config["split"]["fractions"], config["split"]["seed"])
    network = Network(("c0t0", "c0t1"), size)
    spec = network_spec(config, network.tasks, size, 0, architecture, weighting)
    capture = _FinalWeights()
    trainer = Trainer(data, labels, spec, resolve_device(), checkpoint=capture)
    recorded = trainer.fit().to_pandas()
    _write_network(tmp_path / "net", network.name, trainer, capture.state, recorded)
    meta = json.loads((tmp_path / "net" / "network.json").read_text())
    assert meta["model"]["architecture"] == architecture
    assert meta["model"]["width"] == (0.5 if size == "half" else 1.0)
    test = recorded[(recorded.split == "test") & (recorded.metric == "loss")]
    assert meta["recorded"]["loss"]["test"] == dict(
        zip(test[test.epoch == 3].task, test[test.epoch == 3].value)
    )
