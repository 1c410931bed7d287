"""The sweep on a real SLURM: scripts/slurm-local.sh installs Debian's slurmctld/slurmd/munge,
starts a single-node cluster on 127.0.0.1 and stops exactly its own daemons afterwards. Runs
with the official snakemake-executor-plugin-slurm (grouped trainings) and with the Dask
executor's dask-jobqueue SLURMCluster; results must equal a local run's.

Skipped only where the cluster cannot exist (not root, or no packages and no apt-get); in CI
(root, Debian) these tests run."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from backends.helpers import (
    REPO,
    SLURM_FAST,
    SMALL_SWEEP,
    backend_reference,
    check,
    count_trainings,
    pack_sizes,
    read_kv,
    slurm_local,
    slurm_unavailable,
    snakemake,
    sweep,
    sweep_available,
    sweep_reference,
    sweep_values,
    tree_digest,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.slurm,
    pytest.mark.skipif(slurm_unavailable() is not None, reason=str(slurm_unavailable())),
]


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[None]:
    """A running single-node SLURM for the whole session; `down` stops only its PIDs."""
    up = slurm_local("up")
    try:
        if up.returncode != 0:
            pytest.fail(f"scripts/slurm-local.sh up failed:\n{up.stdout}\n{up.stderr}")
        yield
    finally:
        down = slurm_local("down")
        assert down.returncode == 0, down.stderr


def _slurm_job_ids(text: str) -> set[str]:
    return set(re.findall(r"submitted with SLURM jobid (\d+)", text))


def test_backend_workflow_on_slurm_with_group_jobs(slurm_cluster: None, tmp_path: Path) -> None:
    # make_i -> square_i are 4 connected components; --group-components 4 puts all of them
    # into ONE group job (one SLURM job of at most --cores CPUs); `summary` is the second.
    run = check(
        snakemake(
            tmp_path, "--executor", "slurm", "--jobs", "4", *SLURM_FAST,
            "--groups", "make=batch", "square=batch", "--group-components", "batch=4",
            "--cores", "2", "--resources", "mem_mb=2000",
        )
    )  # fmt: skip
    assert tree_digest(tmp_path) == backend_reference()
    assert len(_slurm_job_ids(run.output)) == 2
    assert "group_batch" in run.output
    # The in-process job body really ran inside a SLURM job.
    notes = [read_kv(p) for p in (tmp_path / "out/logs/square").glob("*.log")]
    assert all(n["slurm_job"] for n in notes)


def test_failing_job_is_reported_by_slurm(slurm_cluster: None, tmp_path: Path) -> None:
    run = snakemake(
        tmp_path, "--executor", "slurm", "--jobs", "2", *SLURM_FAST,
        "--config", "samples=1", "fail_shell=0", "--until", "make",
    )  # fmt: skip
    assert run.proc.returncode != 0
    assert "FAILED" in run.output and "Error in rule make" in run.output


@pytest.mark.skipif(sweep_available() is not None, reason=str(sweep_available()))
def test_tiny_sweep_on_slurm_equals_local_run(slurm_cluster: None, tmp_path: Path) -> None:
    """The SLURM plugin's group job trains packs (its group process restarts with threads:
    pipeline/pack_size.py), bitwise equal to an unpacked local run."""
    reference, _ = sweep_reference({**SMALL_SWEEP, "training": {"pack": "off"}})
    # The profile batches the trainings 8 per SLURM job. Every SLURM job that Snakemake waits
    # for costs up to ~20 s here (the plugin's status polls back off by 10 s each), so the
    # test puts the whole DAG (split -> trainings -> collect) into one group: ONE SLURM job.
    # bench/bench_backends.py measures the profile exactly as shipped.
    run = check(
        sweep(
            tmp_path, "--workflow-profile", str(REPO / "profiles" / "slurm-local"),
            "--groups", "split=sweep", "train=sweep", "collect=sweep",
            overrides=SMALL_SWEEP,
        )
    )  # fmt: skip
    assert sweep_values(tmp_path) == reference
    assert count_trainings(tmp_path) > 1
    assert len(_slurm_job_ids(run.output)) == 1
    assert "group_sweep" in run.output
    assert max(pack_sizes(tmp_path)) > 1


@pytest.mark.skipif(sweep_available() is not None, reason=str(sweep_available()))
def test_tiny_sweep_on_dask_jobqueue_slurm_cluster(slurm_cluster: None, tmp_path: Path) -> None:
    """Dask workers started as SLURM jobs (dask-jobqueue) run the trainings in-process."""
    reference, _ = sweep_reference()
    run = check(
        sweep(
            tmp_path, "--workflow-profile", str(REPO / "profiles" / "dask"), "--jobs", "4",
            "--dask-cluster", "slurm", "--dask-slurm-jobs", "1", "--dask-slurm-cores", "2",
            "--dask-slurm-processes", "2", "--dask-slurm-memory", "6GB",
            "--dask-slurm-walltime", "00:20:00", "--dask-slurm-interface", "lo",
        )
    )  # fmt: skip
    assert sweep_values(tmp_path) == reference
    assert "Dask executor: slurm cluster" in run.output
    # The worker jobs were cancelled when Snakemake closed the cluster.
    left = subprocess.run(["squeue", "-h", "-t", "PD,R"], capture_output=True, text=True)
    assert "dask-worker" not in left.stdout


@pytest.mark.skipif(sweep_available() is not None, reason=str(sweep_available()))
def test_group_jobs_pack_on_dask_workers_that_are_slurm_jobs(
    slurm_cluster: None, tmp_path: Path
) -> None:
    """One SLURM job (a dask-jobqueue worker) trains a pack: each group of 8 trainings is one
    Dask task whose members pack together; metrics bitwise equal to an unpacked local run."""
    unpacked, _ = sweep_reference({"training": {"pack": "off"}})
    run = check(
        sweep(
            tmp_path, "--workflow-profile", str(REPO / "profiles" / "dask"), "--jobs", "4",
            "--dask-cluster", "slurm", "--dask-slurm-jobs", "1", "--dask-slurm-cores", "2",
            "--dask-slurm-processes", "1", "--dask-slurm-memory", "6GB",
            "--dask-slurm-walltime", "00:20:00", "--dask-slurm-interface", "lo",
            "--groups", "train=trainbatch", "--group-components", "trainbatch=8",
        )
    )  # fmt: skip
    trainings = count_trainings(tmp_path)
    assert sweep_values(tmp_path) == unpacked
    assert run.output.count("Group job trainbatch") == -(-trainings // 8)
    packs = [
        re.search(r"in a pack of (\d+)", log.read_text())
        for log in (tmp_path / "results" / "logs" / "train").rglob("*.log")
    ]
    assert len(packs) == trainings and max(int(m.group(1)) for m in packs if m) > 1
