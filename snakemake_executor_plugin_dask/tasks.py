"""Functions that run *on Dask workers*.

Distributed unpickles task graphs on the scheduler and runs them on workers, so everything here
must be importable in the workers' environment (the same virtualenv as Snakemake's). The module
keeps its imports light: a worker imports it once and then keeps it (and whatever the in-process
entry points import, e.g. torch and a cached dataset) warm between jobs.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Command-path jobs running in this worker process, by Dask key: cancellation finds their
#: process groups here (``Future.cancel`` alone does not stop a running task).
_RUNNING: dict[str, subprocess.Popen[bytes]] = {}
_RUNNING_LOCK = threading.Lock()

#: ``os.chdir`` is process-wide: serialise it (a worker serves one workflow directory at a time).
_CWD_LOCK = threading.Lock()

_ENTRY_CACHE: dict[str, Callable[..., Any]] = {}

#: How much of a failed command's output travels back into Snakemake's error message (the
#: whole output stays in the log file).
_TAIL_CHARS = 6000
_TAIL_LINES = 40


class InprocessJobError(RuntimeError):
    """A failed in-process job; carries the formatted traceback.

    The original exception might not unpickle in the Snakemake process (a torch or pyarrow
    error type, say), so only its text travels back.
    """


@dataclass
class CommandSpec:
    """A job run as its normal ``python -m snakemake`` command line."""

    key: str
    cmd: str
    workdir: str
    logfile: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class InprocessSpec:
    """A job whose ``run:`` block calls ``entry(input=..., output=..., params=..., log=...,
    threads=...)``: called directly in the worker so imports and caches stay warm."""

    entry: str
    input: dict[str, Any]
    output: dict[str, Any]
    params: dict[str, Any]
    log: list[str]
    threads: int
    workdir: str
    basedir: str
    jobid: int
    rule: str
    wildcards: dict[str, Any]
    resources: dict[str, Any]
    input_files: list[str]
    benchmark: str | None = None
    benchmark_repeats: int = 1
    benchmark_extended: bool = False
    #: Extra keyword arguments for the entry (a group member's ``group`` and ``config``).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class InprocessGroupSpec:
    """A Snakemake group job whose members are all in-process jobs: one Dask task calls every
    member's entry in threads of one warm worker, each with ``group`` (every member's input,
    output, params and log) and ``config`` (the workflow's config), so the entry can share
    work across the group (this project: packed training)."""

    members: list[InprocessSpec]
    threads: int


def _tail(path: str, chars: int = _TAIL_CHARS) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - chars))
            lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-_TAIL_LINES:])
    except OSError as e:
        return f"(no log: {e})"


def run_command(spec: CommandSpec) -> dict[str, Any]:
    """Run a job's command in a new session, so that cancelling kills its whole process tree."""
    os.makedirs(os.path.dirname(spec.logfile) or ".", exist_ok=True)
    env = {**os.environ, **spec.env}
    started = time.time()
    with open(spec.logfile, "wb") as log:
        proc = subprocess.Popen(
            spec.cmd,
            shell=True,
            cwd=spec.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        with _RUNNING_LOCK:
            _RUNNING[spec.key] = proc
        try:
            rc = proc.wait()
        finally:
            with _RUNNING_LOCK:
                _RUNNING.pop(spec.key, None)
    return {
        "rc": rc,
        "host": socket.gethostname(),
        "seconds": time.time() - started,
        "tail": _tail(spec.logfile) if rc != 0 else "",
    }


async def kill_commands(keys: list[str], grace_s: float = 5.0) -> list[str]:
    """SIGTERM the process groups of the given running jobs, SIGKILL them after ``grace_s``.

    Run on every worker through ``Client.run``; a coroutine, so waiting does not block the
    worker's event loop. Returns the keys it signalled.
    """
    with _RUNNING_LOCK:
        procs = {k: _RUNNING[k] for k in keys if k in _RUNNING}
    for proc in procs.values():
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while any(p.poll() is None for p in procs.values()) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    for proc in procs.values():
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return list(procs)


def _enter_workdir(workdir: str, basedir: str) -> None:
    # Jobs see the same relative paths as in a local run (results must be byte-identical), so
    # the worker works from the workflow's directory rather than rewriting paths.
    with _CWD_LOCK:
        if os.getcwd() != workdir:
            os.chdir(workdir)
        # The entry point's package usually lives next to the Snakefile (like `import pipeline`
        # in a local run, where Snakemake puts the workflow dir on sys.path).
        for path in (basedir, workdir):
            if path not in sys.path:
                sys.path.insert(0, path)


def _resolve(entry: str) -> Callable[..., Any]:
    func = _ENTRY_CACHE.get(entry)
    if func is None:
        module_name, _, attr = entry.partition(":")
        if not attr:
            raise ValueError(
                f"inprocess_entry must look like 'package.module:function', got {entry!r}"
            )
        func = importlib.import_module(module_name)
        for part in attr.split("."):
            func = getattr(func, part)
        _ENTRY_CACHE[entry] = func
    return func


def run_inprocess(spec: InprocessSpec) -> dict[str, Any]:
    """Call the job's entry point in this (warm) worker process, as Snakemake's ``run:`` would.

    Writes the job's benchmark file in Snakemake's own format when the rule has ``benchmark:``.
    On failure the traceback is appended to the job's first log file (a ``run:`` block that
    raises leaves no trace there otherwise) and raised as :class:`InprocessJobError`.
    """
    started = time.time()
    try:
        _enter_workdir(spec.workdir, spec.basedir)
        func = _resolve(spec.entry)
        kwargs = {
            "input": spec.input,
            "output": spec.output,
            "params": spec.params,
            "log": spec.log,
            "threads": spec.threads,
            **_accepted(func, spec.extra),
        }
        if spec.benchmark:
            _run_benchmarked(func, kwargs, spec)
        else:
            func(**kwargs)
    except BaseException as e:  # noqa: BLE001 - any failure must reach Snakemake as text
        text = traceback.format_exc()
        if spec.log:
            try:
                with open(spec.log[0], "a") as f:
                    f.write(f"\n[dask executor] job {spec.jobid} ({spec.rule}) failed:\n{text}")
            except OSError:
                pass
        raise InprocessJobError(f"{type(e).__name__}: {e}\n{text}") from None
    return {"rc": 0, "host": socket.gethostname(), "seconds": time.time() - started, "tail": ""}


def _accepted(func: Callable[..., Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The ``extra`` keyword arguments ``func`` takes: an entry written for single jobs still
    runs inside a group, without ``group``/``config``."""
    if not extra:
        return {}
    params = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return extra
    return {k: v for k, v in extra.items() if k in params}


def run_inprocess_group(spec: InprocessGroupSpec) -> dict[str, Any]:
    """Run a group's in-process members in ``spec.threads`` threads of this worker. Every
    member runs (one member's failure does not stop the others, as with ``--keep-going``); the
    task fails if any member failed, naming each."""
    from concurrent.futures import ThreadPoolExecutor

    started = time.time()
    failures = []
    with ThreadPoolExecutor(max_workers=max(1, spec.threads)) as pool:
        futures = [pool.submit(run_inprocess, member) for member in spec.members]
        for member, future in zip(spec.members, futures):
            try:
                future.result()
            except InprocessJobError as e:
                failures.append(f"job {member.jobid} ({member.rule}): {e}")
    if failures:
        raise InprocessJobError(
            f"{len(failures)} of {len(spec.members)} group members failed:\n" + "\n".join(failures)
        )
    return {"rc": 0, "host": socket.gethostname(), "seconds": time.time() - started, "tail": ""}


def _run_benchmarked(func: Callable[..., Any], kwargs: dict[str, Any], spec: InprocessSpec) -> None:
    # Reuse Snakemake's own benchmark code: same TSV/JSONL format and the same semantics as a
    # `run:` rule under --force-use-threads (the whole process is measured).
    from snakemake.benchmark import benchmarked, write_benchmark_records

    records = []
    for _ in range(max(1, spec.benchmark_repeats)):
        with benchmarked() as record:
            func(**kwargs)
        records.append(record)
    for record in records:
        record.jobid = spec.jobid
        record.rule_name = spec.rule
        record.wildcards = spec.wildcards
        record.params = spec.params
        record.resources = spec.resources
        record.input = spec.input_files
        record.threads = spec.threads
    write_benchmark_records(records, spec.benchmark, spec.benchmark_extended)


def worker_info() -> dict[str, Any]:
    """Cheap probe (used by tests and benchmarks): where and in which process a task runs."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "modules": sorted(m for m in ("torch", "pipeline.training") if m in sys.modules),
    }
