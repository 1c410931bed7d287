"""The real Snakemake workflow with task names a file system or a "+" join would choke on, and
with 100 tasks in one network: names verbatim in every table, file names short hashes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from workflow import REPO, network_files, snakemake, write_config

pytestmark = pytest.mark.slow

ODD_TASKS = {
    "Neoplasms benign, malignant and unspecified (incl cysts and polyps)": "binary",
    "a+b / ratio | ppm": "regression",
    "Ångström µ-assay @ 10 µM": "binary",
}


def _odd_table(path: Path, rows: int = 300) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, 8))
    frame = pd.DataFrame({f"fp_{i}": x[:, i] for i in range(8)})
    for j, (task, kind) in enumerate(ODD_TASKS.items()):
        y = x[:, j] + x[:, j + 1] + 0.3 * rng.standard_normal(rows)
        frame[task] = (y > 0).astype(float) if kind == "binary" else y
        frame.loc[rng.random(rows) < 0.1, task] = np.nan
    frame.to_csv(path, index=False)


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("odd")
    _odd_table(workdir / "assays.csv")
    write_config(workdir, {
        "dataset": {"name": "table", "path": "assays.csv", "features": {"prefix": "fp_"},
                    "targets": ODD_TASKS},
        "sweep": {"orders": [1, 2], "sizes": ["full"], "all_in_one": True},
        "training": {"epochs": 2},
        "selection": {"budgets": [1, 2, 3]},
    })  # fmt: skip
    snakemake(workdir)
    return workdir


def test_odd_task_names_are_verbatim_in_every_table(odd_run: Path) -> None:
    names = list(ODD_TASKS)
    results = odd_run / "results"
    metrics = pq.read_table(results / "metrics.parquet").to_pandas()
    assert set(metrics["task"]) == set(names)
    all_in_one = metrics[metrics["n_tasks"] == 3]
    assert [list(t) for t in all_in_one["tasks"].head(1)] == [names]
    # "+" inside a name is escaped in the network label, so the label stays unambiguous.
    assert "a\\+b / ratio | ppm@full" in set(metrics["network"])

    manifest = pq.read_table(results / "networks.parquet").to_pandas()
    assert len(manifest) == 3 + 3 + 1
    assert {tuple(t) for t in manifest["tasks"]} >= {(n,) for n in names}
    for row in manifest.itertuples():
        assert Path(odd_run / row.file).exists() and "/" not in row.stem and row.stem.isascii()
    assert set(network_files(odd_run)) == {
        str(Path(f).relative_to("results/runs")) for f in manifest["file"]
    }

    groupings = pq.read_table(results / "groupings.parquet").to_pandas()
    assert set(groupings["task"].dropna()) == set(names)
    summary = (results / "summary.md").read_text()
    assert all(name in summary for name in names)
    # Every row of the "which tasks train together" table has its 3 method cells (a "|" in a
    # name is escaped, not a column break).
    together = summary.split("### Which tasks train together")[1].split("###")[0]
    rows = [line for line in together.splitlines() if line.startswith("| ")]
    assert rows and all(len(re.split(r"(?<!\\)\|", r)) == len(re.split(r"(?<!\\)\|", rows[0]))
                        for r in rows)  # fmt: skip
    assert "a+b / ratio \\| ppm" in together
    assert nothing_to_do(snakemake(odd_run, "--dry-run"))


def test_networks_cli_lists_the_files(odd_run: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", "networks", "--files", "--configfile", "config.yaml"],
        cwd=odd_run, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ).stdout.splitlines()  # fmt: skip
    listed = {line.split("\t")[0] for line in out}
    assert listed == {f.split("/", 2)[2] for f in network_files(odd_run)}


def nothing_to_do(proc: subprocess.CompletedProcess) -> bool:
    return "Nothing to be done" in proc.stdout + proc.stderr


def test_a_100_task_all_in_one_network_trains_collects_and_is_solved(tmp_path: Path) -> None:
    write_config(tmp_path, {
        "dataset": {"rows": 300, "features": 8, "clusters": 10, "tasks_per_cluster": 10},
        # Order 100 of 100 tasks is the all-in-one network alone: one job, not 101.
        "sweep": {"strategy": "exhaustive", "orders": [100], "sizes": ["full"],
                  "all_in_one": True},
        "model": {"hidden": [16]},
        "training": {"epochs": 1, "batch_size": 256},
        # 100 heads on a 16-wide trunk cost ~12 single-task networks.
        "selection": {"budgets": [20, 40]},
    })  # fmt: skip
    snakemake(tmp_path)
    results = tmp_path / "results"
    (file,) = network_files(tmp_path)
    assert "~100t~" in file and len(Path(file).name) < 100
    manifest = pq.read_table(results / "networks.parquet").to_pylist()
    assert len(manifest) == 1 and len(manifest[0]["tasks"]) == 100
    metrics = pq.read_table(results / "metrics.parquet", columns=["network", "task"]).to_pandas()
    assert metrics["task"].nunique() == 100 and metrics["network"].nunique() == 1
    assert "100 tasks #" in metrics["network"].iloc[0]
    groupings = pq.read_table(results / "groupings.parquet").to_pandas()
    optimal = groupings[
        (groupings["selection_method"] == "optimal") & (groupings["budget"] == 20.0)
    ]
    assert optimal["task"].nunique() == 100 and optimal["test_loss"].notna().all()
    assert set(optimal["network"]) == {manifest[0]["network"]}
