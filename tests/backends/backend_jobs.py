"""Job bodies of tests/backends/Snakefile: called by its `run:` blocks (locally) and directly
by the Dask executor on a worker (`inprocess_entry`). Their outputs never depend on where they
ran; where they ran goes to the log, which the tests read."""

from __future__ import annotations

import os
import time


def _note(log: list[str], **fields: object) -> None:
    if log:
        with open(log[0], "w") as f:
            for key, value in fields.items():
                f.write(f"{key}={value}\n")


def square(input: dict, output: dict, params: dict, log: list, threads: int = 1) -> None:
    if params.get("fail"):
        raise ValueError(f"planned failure for {input}")
    # A module-level counter shows whether this process served earlier jobs (a warm worker).
    global _CALLS
    _CALLS = globals().get("_CALLS", 0) + 1
    numbers = [int(line) for line in open(input["src"]) if line.strip()]
    with open(output["squared"], "w") as f:
        for n in numbers:
            f.write(f"{n * n * params['factor']}\n")
    _note(log, pid=os.getpid(), calls=_CALLS, threads=threads,
          slurm_job=os.environ.get("SLURM_JOB_ID", ""))  # fmt: skip


def heavy(input: dict, output: dict, params: dict, log: list, threads: int = 1) -> None:
    """Records when it ran: the tests check that two threads=2 jobs never overlapped on a
    worker that holds 2 cores."""
    start = time.time()
    time.sleep(float(params["sleep_s"]))
    with open(output["done"], "w") as f:
        f.write("0\n")
    _note(log, pid=os.getpid(), start=start, end=time.time(), threads=threads)


def slow(input: dict, output: dict, params: dict, log: list, threads: int = 1) -> None:
    with open("out/slow_python.pid", "w") as f:
        f.write(str(os.getpid()))
    time.sleep(float(params["sleep_s"]))
    open(output["flag"], "w").close()
