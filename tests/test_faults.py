"""Fault tests that really kill processes: a Snakemake sweep killed with SIGKILL mid-run leaves
only complete, valid files, and a rerun finishes with results identical to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.schema import METRICS, check_file
from workflow import REPO, network_files, snakemake, values, write_config

pytestmark = pytest.mark.slow

SLOWER = {
    "dataset": {"rows": 2400, "tasks": ["c0t0", "c0t1", "c1t0"]},
    "training": {"epochs": 8, "batch_size": 32},
}
N_NETWORKS = 3 * 2 + 3 + 1


def test_killed_sweep_reruns_to_identical_results(tmp_path: Path) -> None:
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    killed.mkdir()
    straight.mkdir()
    for d in (killed, straight):
        write_config(d, SLOWER)

    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(killed), "--configfile", str(killed / "config.yaml"), "--cores", "2",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=killed, env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    runs = killed / "results" / "runs"
    while proc.poll() is None and not (runs.exists() and len(network_files(killed)) >= 3):
        assert time.monotonic() < deadline, "sweep never got going"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = network_files(killed)
    assert 0 < len(partial) < N_NETWORKS, "the kill did not land mid-sweep"
    for name in partial:  # whatever exists is complete and valid
        check_file(runs / name, METRICS)
    assert not (killed / "results" / "metrics.parquet").exists()

    # SIGKILL leaves Snakemake's directory lock behind (it cannot tell a dead run from a live
    # one); unlocking is the documented recovery. --rerun-incomplete (in the profile) then
    # redoes whatever was running.
    assert "cannot be locked" in snakemake(killed, check=False).stderr
    snakemake(killed, "--unlock")
    snakemake(killed)
    snakemake(straight)
    assert len(network_files(killed)) == N_NETWORKS
    assert values(killed / "results" / "metrics.parquet") == values(
        straight / "results" / "metrics.parquet"
    )
