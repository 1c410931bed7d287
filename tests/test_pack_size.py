"""``training.pack`` sizes, and which Snakemake processes restart with threads so that a
cluster group job's trainings pack (pipeline.pack_size; through the real SLURM in
test_backend_slurm.py)."""

from __future__ import annotations

import pytest

from pipeline.pack_size import AUTO_PACK, pack_size, threads_argv

PYTHON_M = "/usr/lib/python3/dist-packages/snakemake/__main__.py"
COMMON = ["--snakefile", "/repo/Snakefile", "--target-jobs", "train:seed=0,stem=a",
          "train:seed=0,stem=b", "--allowed-rules", "train", "--cores", "2", "--attempt", "1",
          "--force", "--no-hooks", "--nolock"]  # fmt: skip
# The SLURM job's own process (its argv as seen on the local SLURM, shortened): its executor
# starts each of the group's jobs with its own srun step.
JOB_STEP = [PYTHON_M, *COMMON, "--local-groupid", "7", "--executor", "slurm-jobstep",
            "--jobs", "1", "--mode", "remote"]  # fmt: skip
# A group's process on the local executor (cluster-generic, Dask's command jobs).
GROUP = [PYTHON_M, *COMMON, "--local-groupid", "7", "--mode", "remote"]
# A single job's process: Snakemake already passes --force-use-threads.
SINGLE = [PYTHON_M, *COMMON, "--force-use-threads", "--mode", "subprocess"]
LOCAL_RUN = [PYTHON_M, "--workflow-profile", "profiles/default", "--cores", "2"]


def test_pack_sizes() -> None:
    assert pack_size("auto") == pack_size(True) == AUTO_PACK > 1
    assert pack_size("off") == pack_size(False) == pack_size(1) == 1 and pack_size(5) == 5


def test_a_group_jobs_process_restarts_with_threads_on_the_local_executor() -> None:
    # The SLURM job's process (as seen on the local SLURM): the job step's executor and its
    # --jobs 1 go; --cores (the group's CPUs) stays.
    assert threads_argv(JOB_STEP, "auto") == [
        *COMMON, "--local-groupid", "7", "--mode", "remote", "--force-use-threads"
    ]  # fmt: skip
    with_script = [*JOB_STEP, "--slurm-jobstep-pass-command-as-script"]
    assert threads_argv(with_script, 8) == threads_argv(JOB_STEP, 8)
    # A group process on the local executor (cluster-generic, Dask's command jobs).
    assert threads_argv(GROUP, "auto") == [*GROUP[1:], "--force-use-threads"]
    assert threads_argv([*GROUP[:-2], "--mode=subprocess"], 8)[-1] == "--force-use-threads"
    assert threads_argv([*GROUP, "--executor", "local"], "auto") is not None


def test_other_processes_are_left_as_they_are() -> None:
    array = [*JOB_STEP, "--slurm-jobstep-array-execs=abc"]
    unknown = [*GROUP, "--executor", "kubernetes"]
    for argv in (SINGLE, LOCAL_RUN, [*GROUP, "--force-use-threads"], array, unknown):
        assert threads_argv(argv, "auto") is None, argv


@pytest.mark.parametrize("pack", ["off", False, 1])
def test_no_restart_without_packing(pack) -> None:
    """Unpacked trainings as threads of one process contend for the interpreter lock (README
    "Packed training"): with packing off a group job keeps Snakemake's processes."""
    assert threads_argv(GROUP, pack) is None


def test_no_restart_where_no_network_of_the_sweep_packs() -> None:
    """Only a group job's process asks whether anything packs (its answer costs an import of
    torch), and nothing restarts where nothing would pack (e.g. every method is GradNorm)."""
    asked = []

    def packs(answer: bool):
        return lambda: asked.append(answer) or answer

    assert threads_argv(GROUP, "auto", packs(False)) is None
    assert threads_argv(JOB_STEP, "auto", packs(True)) is not None
    for argv in (SINGLE, LOCAL_RUN):
        assert threads_argv(argv, "auto", packs(True)) is None
    assert asked == [False, True]


def test_the_job_steps_short_jobs_option_goes_too() -> None:
    short = [*JOB_STEP[:-4], "-j", "1", "--mode", "remote"]
    glued = [*JOB_STEP[:-4], "-j1", "--mode", "remote"]
    assert threads_argv(short, "auto") == threads_argv(glued, "auto") == threads_argv(JOB_STEP, 8)
