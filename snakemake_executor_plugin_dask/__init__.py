# ruff: noqa: UP045  (Optional[X], not X | None: see the note above ExecutorSettings)
"""A Snakemake executor plugin that runs jobs on a Dask distributed cluster.

``snakemake --executor dask --jobs N`` runs every job as a Dask task:

* on an in-process ``LocalCluster`` (default),
* on an existing scheduler (``--dask-scheduler-address tcp://host:8786``, TLS with
  ``tls://`` plus ``--dask-tls-ca-file/--dask-tls-cert/--dask-tls-key``), or
* on workers started as SLURM jobs through dask-jobqueue (``--dask-cluster slurm``).

Two ways to run a job on a worker:

* **in-process** — a ``run:`` job whose params contain ``inprocess_entry="pkg.mod:function"``
  is called directly in the worker process, as ``function(input=..., output=..., params=...,
  log=..., threads=...)``. The worker keeps imports (torch) and caches (a loaded dataset) warm,
  so a small training costs milliseconds instead of a new Python process.
* **in-process group** — a group job whose members are all in-process jobs is ONE task: its
  members are called in threads of one worker, each with two more keyword arguments, ``group``
  (every member's input, output, params and log) and ``config`` (the workflow's config), so
  they can share work (this project packs the group's trainings).
* **command** — every other job (and every other group job) runs its ordinary
  ``python -m snakemake ... --mode remote`` command line in a new session, whose process group
  is killed when the workflow is cancelled.

Each worker advertises its threads and memory as Dask resources ``cores`` and ``mem_mb``, and
each task asks for its job's ``threads`` and ``mem_mb``: Dask never runs more on a worker than
it holds. Requests are capped at the largest worker, as Snakemake caps threads at ``--cores``.
"""

import os
import sys
import threading
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Optional

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface
from snakemake_interface_executor_plugins.settings import (
    CommonSettings,
    DeploymentMethod,
    ExecutorSettingsBase,
)

from . import tasks

# distributed / dask_jobqueue are imported only when the executor starts (.cluster): Snakemake
# imports every installed executor plugin in every `snakemake` process, jobs included.
CLUSTER_KINDS = ("local", "address", "slurm")

__all__ = ["Executor", "ExecutorSettings", "common_settings"]


# No `from __future__ import annotations` and no `X | None` for the fields: snakemake-interface-
# common turns each field's type object into an argparse type and recognises only a real
# `typing.Optional[X]` (postponed annotations would be strings, `X | None` a types.UnionType).
@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    """``--dask-<field>`` command line options (or ``dask-<field>:`` in a profile)."""

    cluster: Optional[str] = field(
        default=None,
        metadata={
            "help": "Where the workers come from: 'local' (an in-process LocalCluster, the "
            "default), 'address' (an existing scheduler, see --dask-scheduler-address; "
            "implied by it) or 'slurm' (dask-jobqueue SLURMCluster, see --dask-slurm-*).",
            "choices": list(CLUSTER_KINDS),
        },
    )
    scheduler_address: Optional[str] = field(
        default=None,
        metadata={
            "help": "Address of a running Dask scheduler, e.g. tcp://host:8786 or "
            "tls://host:8786. Its workers should declare resources, e.g. "
            "`dask worker ADDR --nthreads 4 --resources 'cores=4,mem_mb=16000'`, "
            "so that jobs never oversubscribe them.",
            "env_var": True,
        },
    )
    workers: Optional[int] = field(
        default=None,
        metadata={
            "help": "LocalCluster: number of worker processes (default: --cores, else "
            "--jobs, at most the machine's CPUs, divided by --dask-threads-per-worker)."
        },
    )
    threads_per_worker: int = field(
        default=1,
        metadata={
            "help": "LocalCluster: threads (= 'cores' resource) of each worker process. A job "
            "with more threads is capped to this."
        },
    )
    memory_per_worker: Optional[str] = field(
        default=None,
        metadata={
            "help": "LocalCluster: memory limit (and 'mem_mb' resource) of each worker, e.g. "
            "'4GB' (default: the machine's memory divided among the workers)."
        },
    )
    preload: Optional[str] = field(
        default=None,
        metadata={
            "help": "Comma-separated modules every worker imports at start, e.g. "
            "'pipeline.training' to have torch warm before the first job."
        },
    )
    no_inprocess: bool = field(
        default=False,
        metadata={
            "help": "Run every job as its `python -m snakemake` command, also those whose "
            "params name an `inprocess_entry`."
        },
    )
    keep_logs: bool = field(
        default=False,
        metadata={
            "help": "Keep the output of successful command-path jobs under "
            ".snakemake/dask_logs/ (failed jobs' logs are always kept)."
        },
    )
    tls_ca_file: Optional[str] = field(
        default=None,
        metadata={"help": "TLS: CA certificate file (enables TLS, requires encryption)."},
    )
    tls_cert: Optional[str] = field(
        default=None, metadata={"help": "TLS: this client's (and our workers') certificate."}
    )
    tls_key: Optional[str] = field(
        default=None, metadata={"help": "TLS: private key for --dask-tls-cert."}
    )
    require_encryption: bool = field(
        default=False, metadata={"help": "TLS: refuse unencrypted connections."}
    )
    slurm_queue: Optional[str] = field(
        default=None, metadata={"help": "SLURM workers: partition (default: the cluster's)."}
    )
    slurm_account: Optional[str] = field(
        default=None, metadata={"help": "SLURM workers: account to charge."}
    )
    slurm_cores: int = field(default=1, metadata={"help": "SLURM workers: CPUs per SLURM job."})
    slurm_processes: int = field(
        default=1,
        metadata={"help": "SLURM workers: worker processes per SLURM job (cores are split)."},
    )
    slurm_memory: str = field(
        default="2GB", metadata={"help": "SLURM workers: memory per SLURM job, e.g. '8GB'."}
    )
    slurm_walltime: str = field(
        default="01:00:00", metadata={"help": "SLURM workers: time limit per SLURM job."}
    )
    slurm_interface: Optional[str] = field(
        default=None,
        metadata={"help": "SLURM workers: network interface they listen on, e.g. 'ib0'."},
    )
    slurm_jobs: int = field(
        default=1, metadata={"help": "SLURM workers: number of SLURM jobs to start."}
    )
    slurm_job_extra: Optional[str] = field(
        default=None,
        metadata={
            "help": "SLURM workers: extra #SBATCH directives separated by ';', e.g. "
            "'--gres=gpu:1;--constraint=skylake'."
        },
    )
    status_interval: float = field(
        default=0.05,
        metadata={
            "help": "Seconds between status checks. They only read local future states, "
            "so they can be frequent."
        },
    )


common_settings = CommonSettings(
    non_local_exec=True,
    # Workers read and write the workflow directory: a shared file system, as with SLURM.
    implies_no_shared_fs=False,
    job_deploy_sources=False,
    pass_default_storage_provider_args=True,
    pass_default_resources_args=True,
    pass_envvar_declarations_to_cmd=True,
    auto_deploy_default_storage_provider=False,
    init_seconds_before_status_checks=0,
)


def _plain(value: Any) -> Any:
    """Snakemake's IO objects (str subclasses holding rule references) as plain, cheaply
    picklable values; the job function sees the same strings as in a local run."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _named(container: Any) -> dict[str, Any]:
    # dict(input) in a `run:` block keeps only named entries: mirror exactly that.
    return {k: _plain(v) for k, v in dict(container).items()}


class Executor(RemoteExecutor):
    def __post_init__(self) -> None:
        self.settings: ExecutorSettings = self.workflow.executor_settings or ExecutorSettings()
        from .cluster import connect, make_security

        s = self.settings
        # Snakemake has already changed into the working directory; jobs run from here.
        self.workdir = os.getcwd()
        self.basedir = os.path.dirname(os.path.abspath(self.workflow.main_snakefile))
        self.logdir = os.path.join(self.workdir, ".snakemake", "dask_logs")
        self._outcomes: dict[str, tuple[str, Any]] = {}
        self._outcomes_lock = threading.Lock()
        self._warned: set[str] = set()
        self._capacity_checked = 0.0
        preload = [m.strip() for m in (s.preload or "").split(",") if m.strip()]
        security = make_security(s.tls_ca_file, s.tls_cert, s.tls_key, s.require_encryption)
        kind = s.cluster or ("address" if s.scheduler_address else "local")
        self.kind = kind
        if kind == "address":
            if not s.scheduler_address:
                raise WorkflowError("--dask-cluster address needs --dask-scheduler-address")
            self.client, self.cluster, self.capacity = connect(s.scheduler_address, security)
        elif kind == "slurm":
            from .cluster import start_slurm

            self.client, self.cluster, self.capacity = start_slurm(
                queue=s.slurm_queue,
                account=s.slurm_account,
                cores=s.slurm_cores,
                processes=s.slurm_processes,
                memory=s.slurm_memory,
                walltime=s.slurm_walltime,
                interface=s.slurm_interface,
                jobs=s.slurm_jobs,
                job_extra_directives=[
                    d.strip() for d in (s.slurm_job_extra or "").split(";") if d.strip()
                ],
                preload=preload,
                security=security,
            )
        else:
            from .cluster import start_local

            self.client, self.cluster, self.capacity = start_local(
                self._local_workers(), s.threads_per_worker, s.memory_per_worker, preload
            )
        self.logger.info(
            f"Dask executor: {kind} cluster, scheduler {self.client.scheduler.address}, "
            f"worker capacity cores={self.capacity.cores} mem_mb={self.capacity.mem_mb}"
        )

    # -- sizing ---------------------------------------------------------------------------

    def _local_workers(self) -> int:
        s = self.settings
        if s.workers:
            return s.workers
        cores = self.workflow.resource_settings.cores
        if not cores or cores == sys.maxsize:
            cores = min(self.workflow.resource_settings.nodes or 1, os.cpu_count() or 1)
        return max(1, int(cores) // max(1, s.threads_per_worker))

    def _task_resources(self, job: JobExecutorInterface) -> dict[str, float] | None:
        cap = self.capacity
        # Workers may join after we connected: look again, but not on every job.
        if (
            self.kind == "address"
            and cap.cores is None
            and cap.mem_mb is None
            and time.monotonic() - self._capacity_checked > 5
        ):
            from .cluster import capacity_of

            self._capacity_checked = time.monotonic()
            self.capacity = cap = capacity_of(self.client)
        if cap.cores is None and cap.mem_mb is None:
            self._warn_once(
                "unrestricted",
                "Dask workers declare no 'cores'/'mem_mb' resources: jobs are not limited to "
                "what a worker holds (start workers with --resources 'cores=N,mem_mb=M').",
            )
            return None
        res: dict[str, float] = {}
        if cap.cores is not None:
            threads = max(1, int(job.threads))
            if threads > cap.cores:
                self._warn_once(
                    f"cores-{job.name}",
                    f"{job.name}: {threads} threads capped to the largest worker's {cap.cores}.",
                )
            res["cores"] = min(threads, cap.cores)
        mem = job.resources.get("mem_mb")
        if cap.mem_mb is not None and isinstance(mem, (int, float)) and mem > 0:
            if mem > cap.mem_mb:
                self._warn_once(
                    f"mem-{job.name}",
                    f"{job.name}: mem_mb={mem} capped to the largest worker's {cap.mem_mb}.",
                )
            res["mem_mb"] = min(float(mem), float(cap.mem_mb))
        return res

    def _warn_once(self, key: str, msg: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.logger.warning(msg)

    # -- submission -----------------------------------------------------------------------

    def _inprocess_entry(self, job: JobExecutorInterface) -> str | None:
        if self.settings.no_inprocess or job.is_group():
            return None
        entry = job.params.get("inprocess_entry") if hasattr(job, "params") else None
        if not entry or not getattr(job, "is_run", False):
            return None
        deployment = self.workflow.deployment_settings.deployment_method
        # Anything Snakemake must set up around the job (shadow dir, conda env, container,
        # between-workflow cache) takes the ordinary command path.
        if (
            job.is_shadow
            or (DeploymentMethod.CONDA in deployment and job.conda_env)
            or (DeploymentMethod.APPTAINER in deployment and job.container_img_url)
            or (self.workflow.workflow_settings.cache is not None and job.rule.cache)
        ):
            return None
        return str(entry)

    def _group_entries(self, job: JobExecutorInterface) -> list[str] | None:
        """The members' entries when ``job`` is a group whose members all run in-process."""
        if self.settings.no_inprocess or not job.is_group():
            return None
        entries = [self._inprocess_entry(member) for member in job.jobs]
        return entries if entries and all(entries) else None

    def _inprocess_spec(
        self, job: JobExecutorInterface, entry: str, threads: int, **extra: Any
    ) -> tasks.InprocessSpec:
        # What the local executor does before a `run:` job: create output/log dirs,
        # remove stale outputs, wait for inputs (the command path's own Snakemake does it).
        self.workflow.async_run(job.prepare())
        return tasks.InprocessSpec(
            entry=entry,
            input=_named(job.input),
            output=_named(job.output),
            params=_named(job.params),
            log=[str(f) for f in job.log],
            threads=threads,
            workdir=self.workdir,
            basedir=self.basedir,
            jobid=job.jobid,
            rule=job.rule.name,
            wildcards=dict(job.wildcards_dict),
            resources={k: _plain(v) for k, v in job.resources.items()},
            input_files=[str(f) for f in job.input],
            benchmark=str(job.benchmark) if job.benchmark else None,
            benchmark_repeats=job.benchmark_repeats or 1,
            benchmark_extended=bool(self.workflow.output_settings.benchmark_extended),
            extra=extra,
        )

    def run_job(self, job: JobExecutorInterface) -> None:
        key = f"{job.name}-{job.jobid}-{uuid.uuid4().hex[:8]}"
        entry = self._inprocess_entry(job)
        group_entries = self._group_entries(job)
        resources = self._task_resources(job)
        # What the worker reserved for it (capped like Snakemake caps at --cores).
        threads = (
            int(resources["cores"]) if resources and "cores" in resources else int(job.threads)
        )
        aux: dict[str, Any] = {}
        if entry is not None:
            func: Any = tasks.run_inprocess
            spec: Any = self._inprocess_spec(job, entry, threads)
        elif group_entries is not None:
            # One task for the whole group: its members run in threads of one worker and see
            # each other (`group`), as the jobs of one local Snakemake process do.
            members = list(job.jobs)
            group = [
                {
                    "input": _named(m.input),
                    "output": _named(m.output),
                    "params": _named(m.params),
                    "log": [str(f) for f in m.log],
                }
                for m in members
            ]
            func = tasks.run_inprocess_group
            spec = tasks.InprocessGroupSpec(
                members=[
                    self._inprocess_spec(
                        m, e, max(1, int(m.threads)), group=group, config=self.workflow.config
                    )
                    for m, e in zip(members, group_entries)
                ],
                threads=threads,
            )
        else:
            logfile = os.path.join(self.logdir, job.name, f"{key}.log")
            aux["logfile"] = logfile
            func = tasks.run_command
            spec = tasks.CommandSpec(
                key=key, cmd=self.format_job_exec(job), workdir=self.workdir, logfile=logfile
            )
        try:
            future = self.client.submit(
                func,
                spec,
                key=key,
                pure=False,
                resources=resources,
                # Snakemake decides about retries (--retries), not Dask.
                retries=0,
            )
        except Exception as e:  # noqa: BLE001 - e.g. the scheduler went away
            self.report_job_error(SubmittedJobInfo(job), msg=f"Dask submission failed: {e}")
            return
        aux["future"] = future
        future.add_done_callback(lambda fut, key=key: self._on_done(key, fut))
        self.report_job_submission(SubmittedJobInfo(job, external_jobid=key, aux=aux))

    def _on_done(self, key: str, fut: Any) -> None:
        # Runs in distributed's callback thread, where blocking on result() is allowed; the
        # status loop then only reads this dict and never touches the client.
        try:
            if fut.status == "cancelled":
                outcome: tuple[str, Any] = ("cancelled", "cancelled")
            else:
                outcome = ("ok", fut.result())
        except BaseException as e:  # noqa: BLE001 - task errors, KilledWorker, cancellation
            outcome = ("error", f"{type(e).__name__}: {e}")
        with self._outcomes_lock:
            self._outcomes[key] = outcome

    # -- status ---------------------------------------------------------------------------

    @property
    def next_seconds_between_status_checks(self) -> float:
        # The wait thread starts before __post_init__: fall back to the default until then.
        settings = getattr(self, "settings", None)
        return settings.status_interval if settings else 0.05

    @next_seconds_between_status_checks.setter
    def next_seconds_between_status_checks(self, value: float) -> None:
        pass

    async def check_active_jobs(
        self, active_jobs: list[SubmittedJobInfo]
    ) -> AsyncGenerator[SubmittedJobInfo, None]:
        for job_info in active_jobs:
            with self._outcomes_lock:
                outcome = self._outcomes.pop(job_info.external_jobid, None)
            if outcome is None:
                yield job_info
                continue
            state, value = outcome
            logfile = (job_info.aux or {}).get("logfile")
            if state == "ok" and value["rc"] == 0:
                if logfile and not self.settings.keep_logs:
                    _remove(logfile)
                self.report_job_success(job_info)
            elif state == "ok":
                self.report_job_error(
                    job_info,
                    msg=f"Dask job {job_info.external_jobid} exited with code {value['rc']} on "
                    f"{value['host']}; full output: {logfile}\n{value['tail']}\n",
                )
            else:
                self.report_job_error(
                    job_info, msg=f"Dask job {job_info.external_jobid} failed: {value}\n"
                )

    # -- cancellation and shutdown ----------------------------------------------------------

    def cancel_jobs(self, active_jobs: list[SubmittedJobInfo]) -> None:
        keys = [j.external_jobid for j in active_jobs if j.external_jobid]
        futures = [j.aux["future"] for j in active_jobs if j.aux and "future" in j.aux]
        if not keys:
            return
        try:
            # Pending tasks never start; running ones are released but keep running...
            self.client.cancel(futures, force=True)
            # ...so kill the process groups of running command-path jobs on every worker.
            self.client.run(tasks.kill_commands, keys, on_error="return")
        except Exception as e:  # noqa: BLE001 - best effort while shutting down
            self.logger.warning(f"Dask executor: cancelling jobs failed: {e}")
        # In-process jobs cannot be interrupted inside a thread: closing the cluster we own
        # (shutdown) ends their worker processes. On a shared scheduler they run to the end.

    def shutdown(self) -> None:
        super().shutdown()
        client, cluster = getattr(self, "client", None), getattr(self, "cluster", None)
        if client is not None:
            try:
                client.close(timeout=10)
            except Exception as e:  # noqa: BLE001 - shutting down anyway
                self.logger.debug(f"Dask executor: closing the client: {e}")
        if cluster is not None:
            try:
                cluster.close(timeout=30)
            except Exception as e:  # noqa: BLE001 - shutting down anyway
                self.logger.debug(f"Dask executor: closing the cluster: {e}")


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
    # Keep .snakemake/dask_logs/ tidy: drop the rule's directory once it is empty.
    try:
        os.rmdir(os.path.dirname(path))
    except OSError:
        pass
