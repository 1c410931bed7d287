"""The Dask executor plugin (snakemake_executor_plugin_dask) against real Dask clusters: an
in-process LocalCluster, an existing TLS scheduler with its own worker process, and (in
test_backend_slurm.py) dask-jobqueue workers on a real SLURM. No mocks: every test runs
`snakemake --executor dask` and compares its outputs with a local run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from backends.helpers import (
    REPO,
    SNAKEFILE,
    backend_reference,
    check,
    count_trainings,
    env,
    pack_sizes,
    read_kv,
    snakemake,
    sweep,
    sweep_available,
    sweep_reference,
    sweep_values,
    tree_digest,
)

pytestmark = pytest.mark.slow

DASK = ("--executor", "dask", "--jobs", "4")


def test_local_cluster_matches_local_run_and_reuses_warm_workers(tmp_path: Path) -> None:
    run = check(snakemake(tmp_path, *DASK, "--dask-workers", "2"))
    assert tree_digest(tmp_path) == backend_reference()
    assert "Dask executor: local cluster" in run.output

    # `square` names an inprocess_entry: it ran inside worker processes (not Snakemake's, not
    # a job process of its own), and some worker served more than one job (kept warm).
    notes = [read_kv(p) for p in sorted((tmp_path / "out/logs/square").glob("*.log"))]
    assert len(notes) == 4
    pids = {n["pid"] for n in notes}
    assert len(pids) <= 2
    assert max(int(n["calls"]) for n in notes) >= 2
    # Its benchmark file is Snakemake's own TSV format.
    header = (tmp_path / "out/benchmarks/square/0.tsv").read_text().splitlines()[0]
    assert header.split("\t")[:3] == ["s", "h:m:s", "max_rss"]
    # Shell jobs took the command path; their captured output is dropped once they succeed.
    assert not list((tmp_path / ".snakemake" / "dask_logs").rglob("*.log"))


def test_no_inprocess_runs_every_job_as_a_command(tmp_path: Path) -> None:
    check(snakemake(tmp_path, *DASK, "--dask-no-inprocess"))
    assert tree_digest(tmp_path) == backend_reference()
    notes = [read_kv(p) for p in (tmp_path / "out/logs/square").glob("*.log")]
    # Each job had a Python process of its own.
    assert len({n["pid"] for n in notes}) == 4
    assert {n["calls"] for n in notes} == {"1"}


def test_failures_are_reported_like_other_executors(tmp_path: Path) -> None:
    run = snakemake(tmp_path, *DASK, "--keep-going", "--config", "fail_python=1", "fail_shell=2")
    assert run.proc.returncode != 0
    # The in-process failure carries its traceback; the command failure the job's output.
    assert "ValueError: planned failure" in run.output
    assert "shell job 2 fails" in run.output
    assert "Error in rule square" in run.output and "Error in rule make" in run.output
    # The failed in-process job's traceback is also in its log, as a user would look for it.
    assert "planned failure" in (tmp_path / "out/logs/square/1.log").read_text()
    # Failed outputs are gone, the independent jobs finished (--keep-going).
    assert not (tmp_path / "out/square/1.txt").exists()
    assert not (tmp_path / "out/make/2.txt").exists()
    assert (tmp_path / "out/square/0.txt").exists() and (tmp_path / "out/square/3.txt").exists()
    # The failed command's full output stays on disk.
    assert list((tmp_path / ".snakemake" / "dask_logs" / "make").glob("*.log"))


def test_group_of_inprocess_jobs_is_one_task_and_a_failure_names_its_member(
    tmp_path: Path,
) -> None:
    """`square` jobs grouped 4 per group job run as ONE task of in-process calls (an entry
    without `group`/`config` parameters still runs); a failing member fails the group with its
    traceback, the other members ran."""
    run = snakemake(
        tmp_path, *DASK, "--groups", "square=batch", "--group-components", "batch=4",
        "--config", "fail_python=1", "--until", "square",
    )  # fmt: skip
    assert run.proc.returncode != 0
    assert run.output.count("Group job batch") == 1
    assert "1 of 4 group members failed" in run.output
    assert "ValueError: planned failure" in run.output
    assert "planned failure" in (tmp_path / "out/logs/square/1.log").read_text()
    # Every member was called in the same warm worker process, none as a command.
    notes = [read_kv(tmp_path / f"out/logs/square/{i}.log") for i in (0, 2, 3)]
    assert len({n["pid"] for n in notes}) == 1
    assert not (tmp_path / ".snakemake" / "dask_logs" / "square").exists()


def _wait_for_pids(workdir: Path, names: list[str], timeout: float = 90) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    pids: dict[str, int] = {}
    while time.monotonic() < deadline and len(pids) < len(names):
        for name in names:
            path = workdir / "out" / f"{name}.pid"
            if path.exists() and path.read_text().strip():
                pids[name] = int(path.read_text())
        time.sleep(0.2)
    return pids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_ctrl_c_cancels_running_jobs(tmp_path: Path) -> None:
    """SIGINT to Snakemake's process group (what Ctrl-C in a terminal does) kills a running
    shell job and a running in-process job, and Snakemake exits promptly."""
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
        "--workflow-profile", "none", *DASK, "slow",
    ]  # fmt: skip
    with open(tmp_path / "snakemake.out", "w") as out:
        # As from a terminal: SIGINT handled. Started from a background shell job (nohup, `&`),
        # the tests inherit SIGINT ignored, and Python leaves an ignored SIGINT ignored.
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, env=env(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
    try:
        pids = _wait_for_pids(tmp_path, ["slow_shell", "slow_python"])
        assert set(pids) == {"slow_shell", "slow_python"}, (tmp_path / "snakemake.out").read_text()
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids.values()):
        time.sleep(0.2)
    assert not [name for name, pid in pids.items() if _alive(pid)]
    # Nothing half-written is left behind as if it were complete.
    assert not (tmp_path / "out/slow/shell.txt").exists()
    assert not (tmp_path / "out/slow/python.txt").exists()


def _intervals(workdir: Path) -> list[tuple[float, float]]:
    notes = [read_kv(p) for p in sorted((workdir / "out/logs/heavy").glob("*.log"))]
    return sorted((float(n["start"]), float(n["end"])) for n in notes)


def test_threads_are_respected_as_worker_resources(tmp_path: Path) -> None:
    """Two threads=2 jobs on one worker holding 2 cores run one after the other; on a worker
    holding 4 cores they run together (the contrast shows the first result is not luck)."""
    config = ("--config", "heavy=2", "sleep_s=2")
    narrow, wide = tmp_path / "narrow", tmp_path / "wide"
    for workdir, threads in ((narrow, "2"), (wide, "4")):
        check(
            snakemake(
                workdir, *DASK, "--dask-workers", "1", "--dask-threads-per-worker", threads,
                "--until", "heavy", *config,
            )
        )  # fmt: skip
    (a0, a1), (b0, b1) = _intervals(narrow)
    assert b0 >= a1 - 0.05, "two threads=2 jobs overlapped on a 2-core worker"
    (c0, c1), (d0, d1) = _intervals(wide)
    assert d0 < c1, "a 4-core worker should run two threads=2 jobs at once"


def test_memory_is_respected_as_worker_resources(tmp_path: Path) -> None:
    """mem_mb is a worker resource too: two 300 MB jobs on a worker holding 500 MB never
    overlap, even though the worker has the threads for both."""
    check(
        snakemake(
            tmp_path, *DASK, "--dask-workers", "1", "--dask-threads-per-worker", "4",
            "--dask-memory-per-worker", "500MiB", "--until", "heavy",
            "--config", "heavy=2", "sleep_s=2", "--set-threads", "heavy=1",
        )
    )  # fmt: skip
    (a0, a1), (b0, b1) = _intervals(tmp_path)
    assert b0 >= a1 - 0.05


# --- an existing scheduler over TLS ------------------------------------------------------------


def _make_certs(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate that is its own CA (enough for distributed's TLS, which checks
    the chain, not the host name)."""
    cert, key = directory / "tls-cert.pem", directory / "tls-key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=taskgroup-test", "-keyout", str(key), "-out", str(cert),
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            cmd, env=env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(proc: subprocess.Popen) -> None:
    # Only the processes this test started, by their own process group.
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.skipif(not Path("/usr/bin/openssl").exists(), reason="openssl CLI missing")
def test_existing_scheduler_over_tls(tmp_path: Path) -> None:
    cert, key = _make_certs(tmp_path)
    tls = ["--tls-ca-file", str(cert), "--tls-cert", str(cert), "--tls-key", str(key)]
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    scheduler_file = tmp_path / "scheduler.json"
    scheduler = _start(
        [*dask, "--protocol", "tls", "--host", "127.0.0.1", "--port", "0",
         "--dashboard-address", ":0", "--scheduler-file", str(scheduler_file), *tls],
        tmp_path / "scheduler.log",
    )  # fmt: skip
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tls://")
        worker = _start(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "2",
             "--nworkers", "1", "--resources", "cores=2,mem_mb=4000", "--no-dashboard", *tls],
            tmp_path / "worker.log",
        )  # fmt: skip
        workdir = tmp_path / "wd"
        # Without the TLS settings the client cannot even connect.
        plain = snakemake(
            workdir, *DASK, "--dask-scheduler-address", address.replace("tls://", "tcp://"),
            timeout=120,
        )  # fmt: skip
        assert plain.proc.returncode != 0
        run = check(
            snakemake(
                workdir, *DASK, "--dask-scheduler-address", address,
                "--dask-tls-ca-file", str(cert), "--dask-tls-cert", str(cert),
                "--dask-tls-key", str(key),
            )
        )  # fmt: skip
        assert "Dask executor: address cluster" in run.output
        assert tree_digest(workdir) == backend_reference()
        # The worker declared cores/mem_mb, so jobs carried resource restrictions.
        assert "declare no 'cores'" not in run.output
    finally:
        if worker is not None:
            _stop(worker)
        _stop(scheduler)


# --- the real tiny sweep -----------------------------------------------------------------------


@pytest.mark.skipif(sweep_available() is not None, reason=str(sweep_available()))
def test_tiny_sweep_on_local_cluster_equals_local_run(tmp_path: Path) -> None:
    reference, _ = sweep_reference()
    run = check(
        sweep(
            tmp_path, "--workflow-profile", str(REPO / "profiles" / "dask"), "--jobs", "2",
            "--dask-workers", "2",
        )
    )  # fmt: skip
    assert count_trainings(tmp_path) > 0
    assert sweep_values(tmp_path) == reference
    assert "Dask executor: local cluster" in run.output


@pytest.mark.skipif(sweep_available() is not None, reason=str(sweep_available()))
def test_group_jobs_train_packs_in_one_task_with_unpacked_results(tmp_path: Path) -> None:
    """Trainings grouped 8 per group job: each group is ONE Dask task whose members pack
    together; every network keeps its own metrics, log and benchmark, bitwise equal to an
    unpacked local run."""
    unpacked, _ = sweep_reference({"training": {"pack": "off"}})
    run = check(
        sweep(
            tmp_path, "--workflow-profile", str(REPO / "profiles" / "dask"), "--jobs", "2",
            "--dask-workers", "2", "--groups", "train=trainbatch",
            "--group-components", "trainbatch=8",
        )
    )  # fmt: skip
    trainings = count_trainings(tmp_path)
    assert sweep_values(tmp_path) == unpacked
    # Every training ran inside a group job: 15 trainings, 8 per group, are 2 Dask tasks.
    assert run.output.count("Group job trainbatch") == -(-trainings // 8), run.output[-3000:]
    sizes = pack_sizes(tmp_path)
    assert len(sizes) == trainings and max(sizes) > 1
    benchmarks = list((tmp_path / "results" / "benchmarks" / "train").rglob("*.tsv"))
    assert len(benchmarks) == trainings


def test_worker_killed_during_a_job_is_retried_or_reported(tmp_path: Path) -> None:
    """SIGKILL the Dask worker running an in-process job: the job is rerun on a fresh worker
    (distributed reschedules tasks of a dead worker, the nanny restarts it) or reported as
    failed; never silently lost."""
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
        "--workflow-profile", "none", *DASK, "out/slow/python.txt", "--config", "sleep_s=6",
    ]  # fmt: skip
    with open(tmp_path / "snakemake.out", "w") as out:
        # As from a terminal: SIGINT handled. Started from a background shell job (nohup, `&`),
        # the tests inherit SIGINT ignored, and Python leaves an ignored SIGINT ignored.
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, env=env(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
    try:
        pids = _wait_for_pids(tmp_path, ["slow_python"])
        assert pids, (tmp_path / "snakemake.out").read_text()
        killed = pids["slow_python"]
        os.kill(killed, signal.SIGKILL)
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = (tmp_path / "snakemake.out").read_text()
    if proc.returncode == 0:
        assert (tmp_path / "out/slow/python.txt").exists()
        rerun_pid = int((tmp_path / "out/slow_python.pid").read_text())
        assert rerun_pid != killed, "finished without rerunning the killed job"
    else:
        assert "slow_python" in output and "Error" in output, output
