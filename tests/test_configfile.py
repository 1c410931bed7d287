"""One config, whatever the entry: `snakemake --configfile X` (from the project folder, or your
own with --snakefile) and `taskgroup validate --configfile X` resolve the same config, and a
later config's dataset replaces the earlier one whole (no merged targets)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.config import load_config_file, merge_config_layers

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _folder(path: Path) -> Path:
    """A user's folder: a table with targets a-d, a config.yaml over a, b, c and x.yaml over c,
    d with another epoch count."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"x{i}": rng.standard_normal(200) for i in range(4)})
    for task in "abcd":
        frame[task] = (rng.standard_normal(200) > 0).astype(int)
    frame.to_csv(path / "data.csv", index=False)
    table = {"name": "table", "path": str(path / "data.csv"), "features": {"prefix": "x"}}
    base = {
        "results_dir": str(path / "results"),
        "dataset": {**table, "targets": {t: "binary" for t in "abc"}},
        "sweep": {"orders": [1, 2], "sizes": ["full"], "all_in_one": False},
        "training": {"epochs": 1},
        "selection": {"budgets": [1, 2]},
    }
    other = {"results_dir": str(path / "results"),
             "dataset": {**table, "targets": {t: "binary" for t in "cd"}},
             "sweep": {"orders": [1, 2]}, "training": {"epochs": 2}}  # fmt: skip
    (path / "config.yaml").write_text(yaml.safe_dump(base))
    (path / "x.yaml").write_text(yaml.safe_dump(other))
    return path


def _dry_run_networks(cwd: Path, *args: str) -> set[str]:
    """The network files a real `snakemake -n` would train, as size/stem."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", *args],
        cwd=cwd, capture_output=True, text=True, env=ENV, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return set(re.findall(r"/seed0/((?:full|half)/[^/\s,]+)\.parquet", proc.stdout))


def _validate(cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "validate", *args],
        cwd=cwd, capture_output=True, text=True, env=ENV, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _networks(cwd: Path, *args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "networks", "--files", *args],
        cwd=cwd, capture_output=True, text=True, env=ENV, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {line.split("\t")[0].removesuffix(".parquet") for line in proc.stdout.splitlines()}


def test_own_folder_snakemake_and_validate_agree(tmp_path: Path) -> None:
    own = _folder(tmp_path)
    trained = _dry_run_networks(own, "--snakefile", str(REPO / "Snakefile"), "--configfile",
                                "x.yaml")  # fmt: skip
    # x.yaml's dataset alone (c, d), not config.yaml's targets merged in (a, b, c, d).
    assert trained == {"full/c", "full/d", "full/c+d"}
    assert _networks(own, "--configfile", "x.yaml") == trained
    out = _validate(own, "--configfile", "x.yaml").splitlines()
    assert out[0] == "config: config.yaml + x.yaml"
    assert out[1].startswith("dataset table, ") and out[1].endswith("2 task(s): 'c', 'd'")
    assert out[2].startswith("sizes full: ")  # listed in config.yaml
    assert out[3].startswith("valid; 2 tasks, 3 networks")
    # The rest is merged key by key: config.yaml's sweep, x.yaml's epochs.
    config = load_config_file(own / "x.yaml", check_data=False, base=own / "config.yaml")
    assert config["training"]["epochs"] == 2 and config["sweep"]["all_in_one"] is False


def test_project_folder_snakemake_and_validate_agree(tmp_path: Path) -> None:
    own = _folder(tmp_path)
    # From the project folder, the repo's config.yaml (Tox21) is the first layer.
    trained = _dry_run_networks(REPO, "--configfile", str(own / "x.yaml"))
    tasks = _validate(REPO, "--configfile", str(own / "x.yaml")).splitlines()[1]
    assert tasks.endswith("2 task(s): 'c', 'd'")
    assert {"full/c", "full/d", "full/c+d"} <= trained
    assert _networks(REPO, "--configfile", str(own / "x.yaml")) == trained


def test_merge_rule() -> None:
    layers = [
        {"dataset": {"name": "table", "targets": {"a": "binary"}, "path": "1.csv"},
         "training": {"epochs": 1, "lr": 0.1}, "selection": {"budgets": [1, 2]}},
        {"dataset": {"name": "table", "targets": {"b": "binary"}, "path": "2.csv"},
         "training": {"epochs": 3}, "selection": {"budgets": [4]}},
    ]  # fmt: skip
    merged = merge_config_layers(layers)
    assert merged["dataset"] == layers[1]["dataset"]  # whole, never {a, b}
    assert merged["training"] == {"epochs": 3, "lr": 0.1}  # mappings merge key by key
    assert merged["selection"]["budgets"] == [4]  # lists are values: replaced
    assert layers[0]["training"] == {"epochs": 1, "lr": 0.1}  # the layers are untouched


def test_replace_workflow_config_leaves_the_folder_config_out(tmp_path: Path) -> None:
    own = _folder(tmp_path)
    flags = ("--configfile", "x.yaml", "--replace-workflow-config")
    trained = _dry_run_networks(own, "--snakefile", str(REPO / "Snakefile"), *flags)
    # x.yaml alone: the schema's defaults (half-width singles, the all-in-one network), not
    # config.yaml's sizes [full] and all_in_one false.
    assert trained == {"full/c", "full/d", "half/c", "half/d", "full/c+d"}
    assert _networks(own, *flags) == trained
    assert _validate(own, *flags).splitlines()[0] == "config: x.yaml"


def test_validate_abbreviates_hundreds_of_tasks() -> None:
    from pipeline.cli import _dataset_line

    tasks = [f"assay_{i}" for i in range(617)]
    line = _dataset_line({"name": "toxcast", "tasks": tasks})
    assert line.startswith("dataset toxcast; 617 task(s): 'assay_0', 'assay_1', ")
    assert line.endswith("'assay_8', ... (607 more), 'assay_616'") and len(line) < 200


def test_select_merges_its_configfile_over_the_folder_config(tmp_path: Path, monkeypatch) -> None:
    # `taskgroup select --configfile x.yaml` in the user's folder reads what `snakemake
    # --configfile x.yaml` there runs: x's dataset (tasks c, d) replaces config.yaml's whole,
    # and config.yaml's selection (budgets 1, 2) stays where x says nothing.
    import argparse

    from pipeline.selection.cli import _selection_config

    folder = _folder(tmp_path)
    with open(folder / "x.yaml") as fh:
        other = yaml.safe_load(fh)
    other["dataset"]["tasks"] = ["c", "d"]
    other["selection"] = {"objective": "normalised"}
    (folder / "x.yaml").write_text(yaml.safe_dump(other))
    monkeypatch.chdir(folder)

    def args(*configfile: str, replace: bool = False) -> argparse.Namespace:
        return argparse.Namespace(
            configfile=list(configfile) if configfile else None,
            replace_workflow_config=replace,
            budgets=None,
            objective=None,
            tasks=None,
        )

    selection, tasks = _selection_config(args("x.yaml"))
    assert tasks == ["c", "d"]
    assert list(selection["budgets"]) == [1, 2] and selection["objective"] == "normalised"
    # Without --configfile: ./config.yaml alone; with --replace-workflow-config: x alone.
    selection, _ = _selection_config(args())
    assert list(selection["budgets"]) == [1, 2] and selection["objective"] == "sum"
    selection, _ = _selection_config(args("x.yaml", replace=True))
    assert list(selection["budgets"]) != [1, 2] and selection["objective"] == "normalised"
    # '' alone: the defaults, whatever the folder holds.
    selection, tasks = _selection_config(args(""))
    assert tasks is None and list(selection["budgets"]) != [1, 2]
    from pipeline.options import ConfigError

    with pytest.raises(ConfigError, match="missing.yaml"):
        _selection_config(args("missing.yaml"))
