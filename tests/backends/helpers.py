"""Shared helpers of tests/test_backend_*.py and bench/bench_backends.py: run Snakemake on the
small backend workflow (tests/backends/Snakefile) or on the real tiny sweep, on any executor."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BACKENDS = REPO / "tests" / "backends"
SNAKEFILE = BACKENDS / "Snakefile"
SLURM_LOCAL = REPO / "scripts" / "slurm-local.sh"

# The project root holds the plugin (snakemake_executor_plugin_dask) and `pipeline`; Snakemake
# discovers executor plugins on sys.path, so PYTHONPATH is all the "installation" they need.
# tests/backends holds the backend workflow's job module.
PYTHONPATH = os.pathsep.join(
    [str(REPO), str(BACKENDS), *filter(None, [os.environ.get("PYTHONPATH")])]
)

# Flags that make the SLURM plugin usable against scripts/slurm-local.sh in seconds: squeue for
# status (no accounting daemon) and a 1 s first status check instead of 40 s.
SLURM_FAST = [
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "1",
]


@dataclass
class Run:
    proc: subprocess.CompletedProcess
    seconds: float

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": PYTHONPATH}


def snakemake(workdir: Path, *args: str, snakefile: Path = SNAKEFILE, timeout: int = 300) -> Run:
    """``python -m snakemake`` on ``snakefile`` in ``workdir``; no workflow profile unless one
    is passed in ``args`` (the repo's profiles/default would otherwise apply)."""
    workdir.mkdir(parents=True, exist_ok=True)
    if "--workflow-profile" not in args:
        args = ("--workflow-profile", "none", *args)
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), *args]
    started = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=workdir, env=env(), capture_output=True, text=True, timeout=timeout
    )
    return Run(proc, time.monotonic() - started)


def check(run: Run) -> Run:
    if run.proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({run.proc.returncode}):\n{run.output[-8000:]}")
    return run


def tree_digest(root: Path, patterns: tuple[str, ...] = ("out/make/*", "out/square/*")) -> dict:
    """Relative path -> sha256 of the backend workflow's data outputs (not logs/benchmarks,
    which honestly differ between runs)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for pattern in patterns
        for p in sorted(root.glob(pattern))
    } | {"summary": (root / "out" / "summary.txt").read_text()}


def read_kv(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@functools.cache
def backend_reference() -> dict:
    """The backend workflow's outputs from a local run (computed once per session)."""
    workdir = Path(tempfile.mkdtemp(prefix="backend-local-"))
    check(snakemake(workdir, "--cores", "2"))
    digest = tree_digest(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    return digest


# --- the real sweep ---------------------------------------------------------------------------


def sweep_available() -> str | None:
    """None if the real tiny sweep can run, else why not (the workflow is built in parallel)."""
    if not (REPO / "tests" / "configs" / "tiny.yaml").exists():
        return "tests/configs/tiny.yaml missing"
    jobs = REPO / "pipeline" / "jobs.py"
    if not jobs.exists() or "def run_snakemake_job" not in jobs.read_text():
        return "pipeline.jobs.run_snakemake_job missing"
    return None


#: A smaller tiny sweep (3 tasks: 7 trainings instead of 15) for backends whose every job costs
#: a Python process and seconds of polling (the SLURM plugin).
SMALL_SWEEP = {"dataset": {"tasks": ["c0t0", "c0t1", "c1t0"]}, "sweep": {"sizes": ["full"]}}


def sweep(
    workdir: Path,
    *args: str,
    overrides: dict | None = None,
    target: str = "collect",
    timeout: int = 600,
) -> Run:
    """The real workflow on tests/configs/tiny.yaml (plus ``overrides``) in ``workdir``, up to
    ``target`` (default: the collected metrics table, which the backends are compared on)."""
    sys.path.insert(0, str(REPO / "tests"))
    from workflow import write_config

    workdir.mkdir(parents=True, exist_ok=True)
    write_config(workdir, overrides)
    cmd = [
        # The target first: --configfile, --groups and others take several values.
        sys.executable, "-m", "snakemake", target,
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(workdir / "config.yaml"),
        *args,
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=workdir, env=env(), capture_output=True, text=True, timeout=timeout
    )
    return Run(proc, time.monotonic() - started)


def sweep_values(workdir: Path) -> list[tuple]:
    """The collected metrics table without the columns that honestly differ between runs."""
    sys.path.insert(0, str(REPO / "tests"))
    from workflow import values

    return values(workdir / "results" / "metrics.parquet")


def sweep_reference(overrides: dict | None = None) -> tuple[list[tuple], float]:
    """Metrics of a local run of the tiny sweep (default profile: trainings in threads)."""
    return _sweep_reference(json.dumps(overrides, sort_keys=True))


@functools.cache
def _sweep_reference(overrides_json: str) -> tuple[list[tuple], float]:
    workdir = Path(tempfile.mkdtemp(prefix="sweep-local-"))
    run = check(sweep(workdir, "--cores", "2", overrides=json.loads(overrides_json)))
    result = sweep_values(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    return result, run.seconds


def count_trainings(workdir: Path) -> int:
    return len(list((workdir / "results" / "runs").rglob("*.parquet")))


def pack_sizes(workdir: Path) -> list[int]:
    """The pack size each training's log names (1 where it trained alone)."""
    sizes = []
    for log in (workdir / "results" / "logs" / "train").rglob("*.log"):
        found = re.search(r"in a pack of (\d+)", log.read_text())
        sizes.append(int(found.group(1)) if found else 1)
    return sizes


# --- the local SLURM ---------------------------------------------------------------------------


def slurm_unavailable() -> str | None:
    """None if scripts/slurm-local.sh can bring up SLURM here, else why not."""
    if os.geteuid() != 0:
        return "the local SLURM needs root (it installs packages and runs the daemons as root)"
    have_packages = all(
        shutil.which(b) for b in ("slurmctld", "slurmd", "munged", "sbatch", "squeue")
    )
    if not have_packages and not shutil.which("apt-get"):
        return "SLURM packages are missing and apt-get is unavailable"
    return None


def slurm_local(command: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SLURM_LOCAL), command], capture_output=True, text=True, timeout=timeout
    )
