"""Your own table through the real workflow: an edited data file reruns exactly what it feeds,
a new target column trains only the networks containing it, leftovers are listed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.cli import main
from workflow import network_files, snakemake

pytestmark = pytest.mark.slow


def trainings(proc: subprocess.CompletedProcess) -> int:
    match = re.search(r"^train\s+(\d+)\s*$", proc.stdout + proc.stderr, re.MULTILINE)
    return int(match.group(1)) if match else 0


def _config(workdir: Path, targets: dict) -> None:
    config = {
        "dataset": {"name": "table", "path": str(workdir / "data.csv"),
                    "features": {"prefix": "x"}, "targets": targets},
        "sweep": {"orders": [1], "sizes": ["full"], "all_in_one": True},
        "model": {"hidden": [16]},
        "training": {"epochs": 2, "batch_size": 64},
        "selection": {"budgets": [1, 2]},
    }  # fmt: skip
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def test_table_changes_rerun_exactly_what_they_feed(tmp_path: Path, capsys, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"x{i}": rng.standard_normal(300) for i in range(4)})
    frame["a"] = (frame["x0"] > 0).astype(int)
    frame["b"] = frame["x1"] + 0.1 * rng.standard_normal(300)
    frame.to_csv(tmp_path / "data.csv", index=False)
    _config(tmp_path, {"a": "binary", "b": "regression"})
    snakemake(tmp_path)
    first = network_files(tmp_path)
    assert set(first) == {f"hard_sharing-equal/seed0/full/{s}.parquet" for s in ("a", "a+b", "b")}
    assert "Nothing to be done" in snakemake(tmp_path, "-n").stdout

    # A new column and target: only the networks containing it (its single, the new
    # all-in-one network), never the split nor the others.
    frame["c"] = (frame["x2"] > 0).astype(int)
    frame.to_csv(tmp_path / "data.csv", index=False)
    _config(tmp_path, {"a": "binary", "b": "regression", "c": "binary"})
    dry = snakemake(tmp_path, "-n")
    assert trainings(dry) == 2 and not re.search(r"^split\s", dry.stdout, re.MULTILINE)
    snakemake(tmp_path)
    second = network_files(tmp_path)
    for stem in ("a", "b"):
        key = f"hard_sharing-equal/seed0/full/{stem}.parquet"
        assert second[key] == first[key]

    # The all-in-one network of two tasks is no longer produced: a leftover, listed, kept
    # until asked. (results_dir is relative to the working directory, as for Snakemake.)
    monkeypatch.chdir(tmp_path)
    assert main(["leftovers", "--configfile", str(tmp_path / "config.yaml")]) == 0
    out = capsys.readouterr().out.split()
    # Its metrics, its per-sample test losses (results/samples/), its log and benchmark.
    assert [Path(p).name for p in out] == ["a+b.parquet", "a+b.parquet", "a+b.log", "a+b.tsv"]
    assert [Path(p).parts[1] for p in out[:2]] == ["runs", "samples"]
    assert main(["leftovers", "--configfile", str(tmp_path / "config.yaml"), "--delete"]) == 0
    assert not (tmp_path / out[0]).exists() and (tmp_path / "results" / "runs").is_dir()
    assert not (tmp_path / out[1]).exists() and (tmp_path / "results" / "samples").is_dir()

    # An edited label of task b: b's networks retrain (its single and the all-in-one).
    frame.loc[5, "b"] += 1.0
    frame.to_csv(tmp_path / "data.csv", index=False)
    dry = snakemake(tmp_path, "-n")
    assert trainings(dry) == 2 and not re.search(r"^split\s", dry.stdout, re.MULTILINE)

    # More rows: a new split (its params hold the row count), then every network retrains
    # (Snakemake's mtime trigger: the split file is newer than every result).
    pd.concat([frame, frame.iloc[:20]]).to_csv(tmp_path / "data.csv", index=False)
    dry = snakemake(tmp_path, "-n")
    assert re.search(r"^split\s+1\s*$", dry.stdout, re.MULTILINE)
    assert trainings(dry) == 4


def test_builtin_yeast_runs_with_the_default_split_and_warns(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("dataset: {name: yeast}\nsweep: {orders: [1]}\n")
    proc = snakemake(tmp_path, "-n")
    text = proc.stdout + proc.stderr
    assert "taskgroup warning: 1 task/split warning(s)" in text
    assert "'y13' has only one class in the val split" in text
    assert trainings(proc) == 14 * 2 + 1
