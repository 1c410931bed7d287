"""How many networks a pack holds, and the one thing a cluster group job's Snakemake process
must do for its trainings to pack. Imports nothing heavy: the workflow reads it at parse time.

**Group jobs on clusters.** A group job's Snakemake process (``--local-groupid``, ``--mode
remote``) runs the group's jobs, but never as threads of itself: on the SLURM plugin its
executor is ``slurm-jobstep``, which starts every job (every training) with its own ``srun``
step and Snakemake process (seen on the local SLURM); with the local executor (cluster-generic,
Dask's command jobs) every ``run:`` job is spawned as a process too, because Snakemake passes
``--force-use-threads`` to single jobs only (``snakemake_interface_executor_plugins``,
``RealExecutor.get_job_args``) and job processes read no profile. Each training then sees only
itself and trains alone. With packing on, that process therefore restarts itself once
(:func:`threads_argv`) with the local executor and ``--force-use-threads``: the group's jobs
run as threads of one process inside the job's allocation (its CPUs: the group's ``--cores``),
which sees the group's DAG and packs its trainings as a local run does. Each network keeps its
own job, output, log and benchmark; what is lost is one ``srun`` step per training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

# Automatic pack size: past ~32 members the per-op overhead is already amortised (a 1024x128
# trunk of 32 networks is ~4 M weights per step) and bigger packs only delay the first results.
AUTO_PACK = 32


def pack_size(setting: str | int | bool) -> int:
    """Most members per pack for ``training.pack`` (``auto``, ``off`` (YAML: false) or a
    number); 1 trains one network per job."""
    # `is`, not `in`: 1 == True in Python, and `pack: 1` means one network per job.
    if setting is False or setting == "off":
        return 1
    if setting is True or setting == "auto":
        return AUTO_PACK
    return max(1, int(setting))


def _option(argv: Sequence[str], name: str) -> str | None:
    """The value of ``--name value`` or ``--name=value`` in ``argv`` (None: not given)."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def threads_argv(
    argv: Sequence[str], pack: str | int | bool, packs: Callable[[], bool] = lambda: True
) -> list[str] | None:
    """The arguments to restart this Snakemake process with (``argv[1:]`` with the local
    executor and ``--force-use-threads``) when it is a cluster group job's process, packing is
    on and ``packs()`` (asked only then: some network of the sweep can be packed); None
    otherwise (a local run, a single job, already threaded, a SLURM job array). Unpacked
    trainings as threads of one process would only contend for the interpreter lock."""
    args = list(argv[1:])
    if pack_size(pack) == 1 or "--force-use-threads" in args:
        return None
    if _option(args, "--local-groupid") is None or _option(args, "--mode") not in (
        "remote",
        "subprocess",
    ):
        return None
    if any(a.startswith("--slurm-jobstep-array-execs") for a in args):
        return None  # an array task runs a call decoded from the array, not this group
    executor = _option(args, "--executor")
    if executor not in (None, "local", "slurm-jobstep"):
        return None  # an executor we do not know: leave its jobs as it runs them
    if not packs():
        return None
    threaded, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if executor == "slurm-jobstep" and arg in ("--executor", "--jobs", "-j"):
            skip = True  # with its value: the local executor's parallelism is --cores
            continue
        if arg.startswith(("--executor=", "--jobs=", "--slurm-jobstep-")) or (
            executor == "slurm-jobstep" and arg.startswith("-j") and arg[2:].isdigit()
        ):
            continue
        threaded.append(arg)
    return [*threaded, "--force-use-threads"]
