"""Helpers to run the real Snakemake workflow of this repository in a scratch directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "configs" / "tiny.yaml"


def write_config(workdir: Path, overrides: dict | None = None, base: Path = TINY) -> Path:
    """The tiny config with ``overrides`` merged in (one level deep; a dataset of another kind
    replaces the tiny one's), as workdir/config.yaml."""
    config = yaml.safe_load(base.read_text())
    for key, value in (overrides or {}).items():
        other_dataset = (
            key == "dataset" and value.get("name", config[key]["name"]) != (config[key]["name"])
        )  # another kind of dataset: the tiny one's keys would be refused as foreign
        if isinstance(value, dict) and isinstance(config.get(key), dict) and not other_dataset:
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(
    workdir: Path, *args: str, check: bool = True, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run ``python -m snakemake`` on this repo's Snakefile with ``workdir`` as working dir
    and workdir/config.yaml as the config (the repo's default profile applies)."""
    cmd = [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(workdir / "config.yaml"),
        "--cores", "2",
        *args,
    ]  # fmt: skip
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.run(
        cmd, cwd=workdir, capture_output=True, text=True, env=full_env, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def snakemake_with_fault(
    workdir: Path, fault: str, *args: str, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Like :func:`snakemake` (never raising), with ``fault`` (Python source) run first in the
    Snakemake process: the default profile runs training and estimation jobs as its threads,
    so what ``fault`` patches lands in the real jobs."""
    launcher = workdir / "launch_with_fault.py"
    launcher.write_text(f"{fault}\n\nfrom snakemake.cli import main\n\nmain()\n")
    cmd = [
        sys.executable, str(launcher),
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(workdir / "config.yaml"),
        "--cores", "2",
        *args,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        cmd, cwd=workdir, capture_output=True, text=True, env=env, timeout=timeout
    )


def network_files(workdir: Path) -> dict[str, float]:
    """Network parquet path (relative to results/) -> mtime."""
    root = workdir / "results" / "runs"
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*.parquet")}


def values(path: Path, drop=("wall_time_s", "device", "versions")) -> list[tuple]:
    """Rows of a metrics file without the columns that honestly differ between runs."""
    table = pq.read_table(path)
    table = table.drop_columns([c for c in drop if c in table.column_names])
    return sorted(tuple(map(str, row.values())) for row in table.to_pylist())
