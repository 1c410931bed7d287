"""A training killed with SIGKILL mid-run resumes from its checkpoint and ends with exactly the
metrics of an uninterrupted run; the kill leaves no file that looks complete."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.config import resolve_config
from pipeline.datasets import load_dataset
from pipeline.split import make_split, write_split
from pipeline.sweep import network_spec
from workflow import REPO, values

pytestmark = pytest.mark.slow

EPOCHS = 12

JOB = """
import json, sys
from pipeline.jobs import run_snakemake_job
args = json.loads(sys.argv[1])
run_snakemake_job(**args)
"""


@pytest.fixture()
def job(tmp_path: Path) -> dict:
    config = resolve_config({
        "dataset": {"name": "synthetic", "rows": 3000, "features": 64, "clusters": 1,
                    "tasks_per_cluster": 2},
        "sweep": {"orders": [1, 2]},
        "model": {"hidden": [64, 64]},
        "training": {"epochs": EPOCHS, "batch_size": 32},
    })  # fmt: skip
    data = load_dataset(config["dataset"])
    split = tmp_path / "split.parquet"
    write_split(make_split(data.n_rows, config["split"]["fractions"], 0), str(split))
    spec = network_spec(config, ("c0t0", "c0t1"), "full", 0)
    return {"spec": spec, "split": str(split), "dir": tmp_path}


def run_job(job: dict, name: str, background: bool = False):
    d = job["dir"]
    args = {
        "input": {"split": job["split"]},
        "output": {"metrics": str(d / f"{name}.parquet")},
        "params": {"spec": job["spec"], "checkpoint": str(d / f"{name}.pt")},
        "log": [str(d / f"{name}.log")],
        "threads": 1,
    }
    env = {**os.environ, "PYTHONPATH": str(REPO), "TASKGROUP_CHECKPOINT_SECONDS": "0"}
    cmd = [sys.executable, "-c", JOB, json.dumps(args)]
    if background:
        return subprocess.Popen(cmd, env=env)
    subprocess.run(cmd, env=env, check=True, timeout=300)


def epochs_logged(log: Path) -> int:
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if line.startswith("epoch "))


def test_sigkill_mid_training_then_resume_gives_identical_metrics(job: dict) -> None:
    d = job["dir"]
    proc = run_job(job, "killed", background=True)
    deadline = time.monotonic() + 120
    while epochs_logged(d / "killed.log") < 3 and proc.poll() is None:
        assert time.monotonic() < deadline, "training never reached epoch 3"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before_kill = epochs_logged(d / "killed.log")
    assert 3 <= done_before_kill < EPOCHS, "the kill did not land mid-training"
    assert not (d / "killed.parquet").exists(), "a killed job left an output file"
    assert (d / "killed.pt").exists(), "no checkpoint to resume from"

    run_job(job, "killed")  # the rerun resumes
    log = (d / "killed.log").read_text()
    assert "resumed from" in log
    assert not (d / "killed.pt").exists(), "checkpoint left behind after success"

    run_job(job, "straight")
    assert values(d / "killed.parquet") == values(d / "straight.parquet")


def test_stale_checkpoint_of_another_spec_is_ignored(job: dict) -> None:
    d = job["dir"]
    proc = run_job(job, "a", background=True)
    while epochs_logged(d / "a.log") < 2 and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (d / "a.pt").exists()
    job["spec"]["training"]["lr"] = job["spec"]["training"]["lr"] * 2  # a different training
    run_job(job, "a")
    assert "resumed from" not in (d / "a.log").read_text()
