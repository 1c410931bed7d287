"""Connect to (or start) the Dask cluster the executor submits to."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dask.utils import parse_bytes
from distributed import Client, LocalCluster
from distributed.security import Security

log = logging.getLogger(__name__)


@dataclass
class Capacity:
    """What the largest worker can hold: requests are capped to it (like Snakemake caps a job's
    threads to --cores), because a task whose resources no worker has would wait forever.

    ``None`` means "unknown / not declared": then tasks carry no resource restriction.
    """

    cores: int | None
    mem_mb: int | None


def make_security(
    ca_file: str | None, cert: str | None, key: str | None, require_encryption: bool
) -> Security | None:
    """``distributed.Security`` from file paths; ``None`` when no TLS option is set."""
    if not (ca_file or cert or key or require_encryption):
        return None
    return Security(
        tls_ca_file=ca_file,
        tls_client_cert=cert,
        tls_client_key=key,
        # The same files serve workers started by us (dask-jobqueue) in the same PKI.
        tls_worker_cert=cert,
        tls_worker_key=key,
        tls_scheduler_cert=cert,
        tls_scheduler_key=key,
        require_encryption=require_encryption or bool(ca_file),
    )


def _total_memory_mb() -> int:
    from distributed.system import MEMORY_LIMIT

    return int(MEMORY_LIMIT / 2**20)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def start_local(
    workers: int, threads_per_worker: int, memory_per_worker: str | None, preload: list[str]
) -> tuple[Client, LocalCluster, Capacity]:
    """An in-process scheduler with ``workers`` worker processes.

    Each worker advertises ``cores`` = its threads and ``mem_mb`` = its memory limit as Dask
    resources; every task asks for its job's threads and mem_mb, so the scheduler never runs
    more than a worker can hold.
    """
    mem_mb = (
        int(parse_bytes(memory_per_worker) / 2**20)
        if memory_per_worker
        else max(1, _total_memory_mb() // workers)
    )
    # Worker processes inherit an ignored SIGINT (Python keeps SIG_IGN at start-up): a Ctrl-C in
    # the terminal, sent to the whole foreground process group, then reaches Snakemake only.
    # Snakemake cancels the jobs (killing their process groups through the still-living
    # workers) and closes the cluster in order, instead of racing workers that die first.
    with _sigint_ignored():
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            memory_limit=f"{mem_mb}MiB",
            resources={"cores": threads_per_worker, "mem_mb": mem_mb},
            dashboard_address=None,
            preload=preload or None,
            # A failing job is reported by Snakemake; the workers' own "Compute Failed"
            # warnings would only repeat it, in a less readable form.
            silence_logs=logging.ERROR,
        )
    client = Client(cluster)
    return client, cluster, Capacity(cores=threads_per_worker, mem_mb=mem_mb)


def start_slurm(
    *,
    queue: str | None,
    account: str | None,
    cores: int,
    processes: int,
    memory: str,
    walltime: str,
    interface: str | None,
    jobs: int,
    job_extra_directives: list[str],
    preload: list[str],
    security: Security | None,
) -> tuple[Client, Any, Capacity]:
    """Workers as SLURM jobs via dask-jobqueue (each job runs ``processes`` workers)."""
    from dask_jobqueue import SLURMCluster

    per_worker_cores = max(1, cores // processes)
    per_worker_mem_mb = int(parse_bytes(memory) / 2**20) // processes
    extra_args = ["--resources", f"cores={per_worker_cores},mem_mb={per_worker_mem_mb}"]
    for module in preload:
        extra_args += ["--preload", module]
    kwargs: dict[str, Any] = {
        "queue": queue,
        "account": account,
        "cores": cores,
        "processes": processes,
        "memory": memory,
        "walltime": walltime,
        "interface": interface,
        "job_extra_directives": job_extra_directives,
        "worker_extra_args": extra_args,
        # The same interpreter (and so the same environment) as Snakemake's.
        "python": sys.executable,
        # Worker logs next to the other Snakemake state instead of the working directory.
        "log_directory": os.path.join(".snakemake", "dask-jobqueue"),
    }
    if security is not None:
        kwargs.update(security=security, protocol="tls://")
    cluster = SLURMCluster(**{k: v for k, v in kwargs.items() if v is not None})
    log.debug("dask-jobqueue job script:\n%s", cluster.job_script())
    cluster.scale(jobs=jobs)
    client = Client(cluster, security=security) if security else Client(cluster)
    return client, cluster, Capacity(cores=per_worker_cores, mem_mb=per_worker_mem_mb)


def connect(address: str, security: Security | None) -> tuple[Client, None, Capacity]:
    """An existing scheduler; its workers' declared ``cores``/``mem_mb`` resources (if any)
    decide whether tasks carry resource restrictions (see :func:`capacity_of`)."""
    client = Client(address, security=security) if security else Client(address)
    return client, None, capacity_of(client)


def capacity_of(client: Client) -> Capacity:
    """The largest declared ``cores`` / ``mem_mb`` over the workers connected right now."""
    workers = (
        client.scheduler_info(n_workers=-1).get("workers", {})
        if _takes_n(client)
        else (client.scheduler_info().get("workers", {}))
    )
    cores = [w.get("resources", {}).get("cores") for w in workers.values()]
    mems = [w.get("resources", {}).get("mem_mb") for w in workers.values()]
    cores = [c for c in cores if c]
    mems = [m for m in mems if m]
    return Capacity(
        cores=int(max(cores)) if cores else None, mem_mb=int(max(mems)) if mems else None
    )


def _takes_n(client: Client) -> bool:
    # Newer distributed returns only the first few workers unless asked for all.
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters
