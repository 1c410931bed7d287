"""Which training errors are recorded and which fail the job (pipeline.jobs, pipeline.failures):
a random control's own error is recorded with its dataset and time; the machine's moment (memory,
disk) and Ctrl-C are never recorded; a shared control is not only a control; a failed run file
that now has another role is refused by collect; a failed pack keeps its log lines. Real files
laid out as the workflow does; the fault is injected in ``Trainer`` as in
test_workflow_failed_control.py."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.config import resolve_config
from pipeline.datasets import load_dataset
from pipeline.failures import transient
from pipeline.jobs import collect_job, run_snakemake_job
from pipeline.split import make_split, write_split
from pipeline.sweep import Network, network_spec
from pipeline.training import Trainer

METHOD = "hard_sharing-equal"
CONTROL = ("task_0", "task_2")
OUT_OF_MEMORY = RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 GB")


@pytest.fixture
def workdir(tmp_path: Path) -> SimpleNamespace:
    """A table of one's own (its data's name, ``mine``, is not its loader's, ``table``)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"fp_{k}": (rng.random(200) < 0.2).astype(np.int8) for k in range(16)})
    for t in range(4):
        frame[f"task_{t}"] = (rng.random(200) < 0.4).astype(float)
    frame.to_parquet(tmp_path / "mine.parquet")
    config = resolve_config({
        "dataset": {"name": "table", "path": str(tmp_path / "mine.parquet"),
                    "features": {"prefix": "fp_"},
                    "targets": {f"task_{t}": "binary" for t in range(4)}},
        "model": {"hidden": [8]},
        "training": {"epochs": 2, "batch_size": 64},
    })  # fmt: skip
    data = load_dataset(config["dataset"])
    split = tmp_path / "results" / "split.parquet"
    split.parent.mkdir(parents=True)
    write_split(make_split(data.n_rows, config["split"]["fractions"], 0), str(split))
    return SimpleNamespace(root=tmp_path, config=config, data=data, split=str(split))


def _groups(w: SimpleNamespace, decided: list, controls: list[dict]) -> None:
    path = w.root / "results" / "groups" / f"{METHOD}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    networks = [{"tasks": list(t), "size": "full"} for t in decided]
    path.write_text(json.dumps({"networks": networks, "controls": controls}), encoding="utf-8")


def _control(tasks=CONTROL, shared: bool = False) -> dict:
    return {"tasks": list(tasks), "size": "full", "matches": list(tasks), "shared": shared}


def _train(w: SimpleNamespace, tasks=CONTROL, pending=None, pack="off") -> tuple[Path, Path]:
    network = Network(tuple(tasks), "full")
    metrics = w.root / "results" / "runs" / METHOD / "seed0" / "full" / f"{network.stem}.parquet"
    log = w.root / "results" / "logs" / f"{network.stem}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    spec = network_spec(w.config, tuple(tasks), "full", 0)
    threads = torch.get_num_threads()
    try:
        run_snakemake_job(
            {"split": w.split}, {"metrics": str(metrics)}, {"spec": spec}, [str(log)], 1,
            pending=None if pending is None else (lambda: pending(str(metrics), str(log), spec)),
            pack=pack,
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return metrics, log


def _fault(monkeypatch, error: BaseException, times: int | None = None) -> list:
    """``Trainer`` raises ``error`` (the first ``times`` constructions, or always); returns
    the list of constructions seen."""
    init, calls = Trainer.__init__, []

    def fault(self, *args, **kwargs):
        calls.append(args[2]["tasks"])
        if times is None or len(calls) <= times:
            raise error
        init(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "__init__", fault)
    return calls


def test_transient_errors_are_the_machines_moment() -> None:
    for error in (MemoryError(), OSError(28, "No space left on device"), OUT_OF_MEMORY,
                  torch.OutOfMemoryError("CUDA"), RuntimeError("CUDA error: out of memory"),
                  RuntimeError("CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate"),
                  RuntimeError("std::bad_alloc"), KeyboardInterrupt(), SystemExit(1)):  # fmt: skip
        assert transient(error), error
    for error in (RuntimeError("injected"), ValueError("bad"), FloatingPointError("NaN")):
        assert not transient(error), error


def test_a_control_only_error_is_recorded_with_its_dataset_and_time(workdir, monkeypatch) -> None:
    _groups(workdir, decided=[], controls=[_control()])
    _fault(monkeypatch, RuntimeError("injected fault"))
    metrics, log = _train(workdir)
    table = pq.read_table(metrics).to_pandas()
    assert set(table.status) == {"failed"} and table.value.isna().all()
    # As a finished training records them: the data's name, the time the attempt took.
    assert set(table.dataset) == {"mine"}
    assert (table.wall_time_s > 0).all()
    text = log.read_text()
    assert "RuntimeError: injected fault" in text and "recorded as status 'failed'" in text


@pytest.mark.parametrize(
    "error", [MemoryError(), OSError(28, "No space left on device"), OUT_OF_MEMORY],
    ids=["MemoryError", "disk-full", "cpu-allocator"],
)  # fmt: skip
def test_a_controls_transient_error_fails_the_job(workdir, monkeypatch, error) -> None:
    _groups(workdir, decided=[], controls=[_control()])
    _fault(monkeypatch, error)
    with pytest.raises(type(error)):
        _train(workdir)
    assert not list((workdir.root / "results" / "runs").rglob("*.parquet"))  # a rerun retries
    log = next((workdir.root / "results" / "logs").glob("*.log")).read_text()
    assert "not recorded as this control's result" in log


def test_a_shared_control_is_not_only_a_control(workdir, monkeypatch) -> None:
    """Drawn equal to a first-stage network (``shared``): the first stage needs it trained."""
    _groups(workdir, decided=[], controls=[_control(shared=True)])
    _fault(monkeypatch, RuntimeError("injected fault"))
    with pytest.raises(RuntimeError, match="injected fault"):
        _train(workdir)
    assert not list((workdir.root / "results" / "runs").rglob("*.parquet"))


def test_collect_refuses_a_failed_file_that_has_another_role_now(workdir, monkeypatch) -> None:
    _groups(workdir, decided=[], controls=[_control()])
    _fault(monkeypatch, RuntimeError("injected fault"))
    failed, _ = _train(workdir)
    monkeypatch.undo()
    ok, _ = _train(workdir, tasks=("task_1",))
    results = workdir.root / "results"

    def collect(tag: str) -> None:
        inputs = SimpleNamespace(metrics=[str(ok)], decided=[str(failed)])
        outputs = SimpleNamespace(parquet=str(results / f"{tag}.parquet"),
                                  duckdb=str(results / f"{tag}.duckdb"),
                                  networks=str(results / f"{tag}-networks.parquet"))  # fmt: skip
        collect_job(inputs, outputs, None, [str(results / f"{tag}.log")], 1)

    collect("as-control")  # only a control: collected, its rows say 'failed'
    statuses = set(pq.read_table(results / "as-control.parquet").column("status").to_pylist())
    assert statuses == {"ok", "failed"}

    # A later budget made the same task set a decided group: the failed file must not stand
    # in for it (it would silently drop out of the strategy's pool).
    _groups(workdir, decided=[CONTROL], controls=[_control()])
    with pytest.raises(ValueError, match="Delete the file") as refused:
        collect("as-decided")
    assert str(failed) in str(refused.value)
    assert not list(results.glob("as-decided*"))  # nothing half-written


def test_ctrl_c_in_a_pack_stops_without_retraining_alone(workdir, monkeypatch) -> None:
    from pipeline.packing import SCHEDULER, TrainJob

    calls = _fault(monkeypatch, KeyboardInterrupt())

    def pending(metrics: str, log: str, spec: dict) -> list:
        return [TrainJob(spec, metrics, log, None, workdir.split)]

    with pytest.raises(KeyboardInterrupt):
        _train(workdir, tasks=("task_1",), pending=pending, pack=4)
    assert len(calls) == 1  # the pack's construction only: not retrained alone
    assert not SCHEDULER.slots and not SCHEDULER.queue


def test_a_failed_pack_keeps_its_lines_in_the_log(workdir, monkeypatch) -> None:
    from pipeline.packing import TrainJob

    calls = _fault(monkeypatch, RuntimeError("pack fault"), times=1)

    def pending(metrics: str, log: str, spec: dict) -> list:
        return [TrainJob(spec, metrics, log, None, workdir.split)]

    metrics, log = _train(workdir, tasks=("task_1",), pending=pending, pack=4)
    assert len(calls) == 2  # in the pack, then alone
    assert set(pq.read_table(metrics).column("status").to_pylist()) == {"ok"}
    text = log.read_text()
    assert (
        text.index("pack failed: RuntimeError('pack fault')")
        < text.index("not packed: its pack failed")
        < text.index("epoch 2/2")
    )
