"""Train one network and record every epoch's per-task, per-split losses and metrics.

Entry points: :func:`train_network` (pure: data in, Arrow table out) and :class:`Trainer`, whose
pieces (``start``, ``run_epoch``, ``close_epoch``, ``finish``) a packed training
(``pipeline.packing``) shares. The workflow's job body is ``pipeline.jobs.train_job``: this
module never imports the layers that call it (packing, the TAG recorder, jobs).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from .datasets import Dataset, load_dataset
from .datasets.base import DENSE_TYPES
from .metrics import (
    METRIC_OF,
    DenseScore,
    dense_loss,
    labelled_metric,
    masked_binary_losses,
    masked_loss,
    safe_row_losses,
    task_metric,
)
from .models import SIZE_FRACTIONS, ModelShape, build_model, reference_macs, widths_for_size
from .models.base import Architecture
from .schema import METRICS, SPLITS, with_spec
from .sweep import Network, spec_hash
from .weighting import Weighting, build_weighting

EVAL_CHUNK = 8192
# Images per evaluation chunk: about this many input pixels at once (a 64x64 image: 256).
EVAL_PIXELS = 1 << 20
# Networks with more tasks log a per-epoch summary of their losses, not each task's.
LOG_TASKS = 16


def resolve_device(name: str | None = None) -> torch.device:
    """``TASKGROUP_DEVICE`` (cpu, cuda, cuda:1, ...) or "auto": a runtime choice, never part of
    a network's params, so moving a sweep to a GPU node does not retrain it."""
    name = name or os.environ.get("TASKGROUP_DEVICE", "auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def network_seed(seed: int, network: str) -> int:
    """A per-network seed: networks trained with one config seed still differ in init."""
    digest = spec_hash({"seed": seed, "network": network})
    return int(digest[:15], 16)


def package_versions() -> str:
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("numpy", "pyarrow", "taskgroup"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "unknown"
    return json.dumps(versions, sort_keys=True)


@dataclass
class _Inputs:
    """The dataset as tensors on the device, with split row ids and per-task target scaling."""

    x: object  # torch.Tensor or SparseMatrix
    y: torch.Tensor  # (rows, tasks) of this network, regression targets standardised
    rows: dict[str, torch.Tensor]
    scale: list[float]  # regression: target std, to report RMSE in original units
    # Dense tasks' per-pixel labels by task index: segmentation int64 (-1 = missing),
    # dense_regression standardised (NaN = missing), normals as given (NaN = missing).
    dense: dict[int, torch.Tensor] | None = None
    # Sparse inputs: each split's rows as model inputs, in chunks of EVAL_CHUNK (_Features).
    eval_inputs: dict[str, list] | None = None
    # Each split's labels as every evaluation scores them (_split_labels), built once.
    split_labels: dict[str, _SplitLabels] = field(default_factory=dict)


@dataclass(frozen=True)
class _SplitLabels:
    """One split's labels of a network's one-output tasks (binary, regression), in the forms
    masked_loss and task_metric would derive from them every epoch, per task: ``labelled``
    rows (bool), ``safe`` targets (missing labels 0), ``count`` (0-dim int64), and the
    labelled rows' ``positions`` and ``targets`` (NumPy)."""

    labelled: list[torch.Tensor]
    safe: list[torch.Tensor]
    count: list[torch.Tensor]
    positions: list[np.ndarray]
    targets: list[np.ndarray]


@dataclass(frozen=True)
class _Features:
    x: object  # torch.Tensor or SparseMatrix
    # SparseMatrix only: each split's rows sliced once into chunks of EVAL_CHUNK. Every network
    # of a sweep evaluates the same rows every epoch, and a sparse take is index arithmetic
    # (a few per cent of a packed network's time when redone each epoch); a dense slice is a
    # copy that keeping would only double in memory.
    eval_inputs: dict[str, list] | None


def _prepare(data: Dataset, labels: np.ndarray, tasks: list[str], device: torch.device) -> _Inputs:
    cols = [data.task_index(t) for t in tasks]
    y = data.targets[:, cols].astype(np.float32).copy()
    train = labels == "train"
    scale = []
    for j, c in enumerate(cols):
        if data.task_types[c] == "regression":
            col = y[train, j]
            mean, std = np.nanmean(col), np.nanstd(col) or 1.0
            y[:, j] = (y[:, j] - mean) / std
            scale.append(float(std))
        else:
            scale.append(1.0)
    dense = {}
    for j, task in enumerate(tasks):
        kind = data.task_types[cols[j]]
        if kind not in DENSE_TYPES:
            continue
        labels_j = data.dense_targets[task]
        if kind == "segmentation":
            ids = np.where(np.isnan(labels_j), -1, labels_j).astype(np.int64)
            dense[j] = torch.from_numpy(ids).to(device)
            continue
        values = labels_j.astype(np.float32)
        if kind == "dense_regression":
            # Standardised on the train split's labelled pixels, as regression targets are.
            mean, std = np.nanmean(values[train]), np.nanstd(values[train]) or 1.0
            values = (values - mean) / std
            scale[j] = float(std)
        dense[j] = torch.from_numpy(np.ascontiguousarray(values)).to(device)
    features = _features(data, labels, device)
    rows = {s: torch.from_numpy(np.flatnonzero(labels == s)).to(device) for s in SPLITS}
    return _Inputs(
        x=features.x,
        y=torch.from_numpy(y).to(device),
        rows=rows,
        scale=scale,
        dense=dense or None,
        eval_inputs=features.eval_inputs,
    )


_feature_cache: dict[tuple, _Features] = {}
_feature_lock = threading.Lock()


def _features(data: Dataset, labels: np.ndarray, device: torch.device) -> _Features:
    """The model-ready feature matrix, built once per (dataset, split, device) in a process:
    every network of a sweep shares it (read-only), so a job does not rebuild it."""
    from .models.layers import SparseMatrix

    train = labels == "train"
    split = np.concatenate([train, labels == "val"])
    key = (id(data), hashlib.sha1(split.tobytes()).hexdigest(), str(device))
    with _feature_lock:
        if key not in _feature_cache:
            x = torch.from_numpy(data.features).to(device)
            if data.binary_features:
                x = SparseMatrix(x)
            elif data.features.ndim == 4:
                # Images: standardised per channel over the train split's pixels.
                train_x = data.features[train]
                mean = torch.from_numpy(train_x.mean(axis=(0, 2, 3))).to(device)[:, None, None]
                std = torch.from_numpy(train_x.std(axis=(0, 2, 3))).to(device)[:, None, None]
                x = ((x - mean) / torch.where(std == 0, 1.0, std)).float()
            else:
                mean = torch.from_numpy(data.features[train].mean(axis=0)).to(device)
                std = torch.from_numpy(data.features[train].std(axis=0)).to(device)
                x = ((x - mean) / torch.where(std == 0, 1.0, std)).float()
            eval_inputs = None
            if isinstance(x, SparseMatrix):
                eval_inputs = {
                    s: _chunked(x, torch.from_numpy(np.flatnonzero(labels == s)).to(device))
                    for s in SPLITS
                }
            if len(_feature_cache) >= 4:
                _feature_cache.pop(next(iter(_feature_cache)))
            _feature_cache[key] = _Features(x, eval_inputs)
        return _feature_cache[key]


def _chunked(x, rows: torch.Tensor) -> list:
    """``rows`` as model inputs, in chunks of EVAL_CHUNK."""
    return [_take(x, rows[i : i + EVAL_CHUNK]) for i in range(0, rows.numel(), EVAL_CHUNK)]


def _take(x, rows: torch.Tensor):
    from .models.layers import SparseMatrix

    return x.take(rows) if isinstance(x, SparseMatrix) else x[rows]


class Checkpointer:
    """Saves the whole training state (weights, optimiser, weighting, RNG, rows so far) so a
    killed or preempted job resumes where it was and ends with the same metrics as an
    uninterrupted run. Saved at most every ``TASKGROUP_CHECKPOINT_SECONDS`` (default 60: small
    networks finish before paying for one; 0 = every epoch), atomically (temp + rename)."""

    def __init__(self, path: str | None, every_s: float | None = None) -> None:
        self.path = path
        if every_s is None:
            every_s = float(os.environ.get("TASKGROUP_CHECKPOINT_SECONDS", "60"))
        self.every_s = every_s
        self.last = time.perf_counter()

    def load(self, config_hash: str) -> dict | None:
        if not self.path or not os.path.exists(self.path):
            return None
        # weights_only: a checkpoint is data, never code to run.
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        return state if state.get("config_hash") == config_hash else None

    def due(self, final: bool) -> bool:
        """Time for a checkpoint? Never after the last epoch: the output file follows."""
        return bool(self.path) and not final and time.perf_counter() - self.last >= self.every_s

    def save(self, state: dict) -> None:
        from .io import atomic_write

        with atomic_write(self.path) as tmp:
            torch.save(state, tmp)
        self.last = time.perf_counter()

    def remove(self) -> None:
        if self.path and os.path.exists(self.path):
            os.unlink(self.path)


class FusedTargets(NamedTuple):
    """(rows, tasks) targets with missing labels as 0, and the 0/1 mask of labelled cells."""

    safe_y: torch.Tensor
    mask: torch.Tensor


@dataclass
class EpochResult:
    """One pass over the training batches: per-task loss sums, the steps taken, and whether a
    non-finite loss stopped it."""

    sums: torch.Tensor
    steps: int
    diverged: bool

    def mean_losses(self) -> list[float]:
        return (self.sums / max(self.steps, 1)).tolist()


@dataclass
class TrainingRun:
    """One network's training state between epochs (what :meth:`Trainer.start` returns and
    :meth:`Trainer.close_epoch` advances): the same for a training alone and a pack member."""

    model: nn.Module
    weighting: Weighting
    optimizer: torch.optim.Optimizer
    n_labelled: dict
    macs: int
    cost: float
    epoch_rows: list[dict] = field(default_factory=list)
    first_epoch: int = 1
    # The recorded time before this process (a resumed training's checkpoint).
    elapsed0: float = 0.0
    # perf_counter() at which elapsed time would have been 0 (resumes shift it back).
    started: float = 0.0
    diverged_at: int | None = None
    done: bool = False


class StepObserver:
    """Watches a training without changing it: called at every step with the batch and the
    per-task losses, before the optimiser step (the parameters are the step's starting point).
    Its state is checkpointed with the training's, so a resumed training observes exactly the
    same steps (the TAG affinity recorder is one)."""

    def on_step(self, model: nn.Module, batch: torch.Tensor, losses: torch.Tensor) -> None:
        raise NotImplementedError

    def end_epoch(self, epoch: int) -> None:
        """The epoch is over (its rows are final)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Trainer:
    """The one training loop: every network, whatever its architecture and weighting (AdaShare's
    policy search included, through its ``pretrain`` hook), is trained and recorded here.

    ``fit`` trains the network ``spec`` describes and returns its METRICS rows (every epoch
    kept). Besides each split's loss and metric, every epoch records what the method learned as
    split-"train" rows: ``task_weight`` per task (all weightings; 1.0 for equal), whatever else the
    weighting's ``recorded()`` returns (``log_variance``, ``grad_norm``) and the architecture's
    ``recorded()`` (AdaShare: ``policy_block_<k>``; a pre-training phase's values at epoch 0).
    """

    def __init__(
        self,
        data: Dataset,
        labels: np.ndarray,
        spec: dict,
        device: torch.device,
        log: Callable[[str], None] = lambda line: None,
        checkpoint: Checkpointer | None = None,
        observer: StepObserver | None = None,
    ) -> None:
        self.data, self.labels, self.spec = data, labels, spec
        self.device, self.log = device, log
        self.checkpoint = checkpoint or Checkpointer(None)
        self.observer = observer
        self.tasks = list(spec["tasks"])
        self.network = Network(tuple(self.tasks), spec["size"])
        cols = [data.task_index(t) for t in self.tasks]
        self.types = [data.task_types[c] for c in cols]
        self.shape = ModelShape.of(data, spec["model"])
        self.widths = widths_for_size(spec["architecture"], self.shape, spec["size"])
        self.output_dims = [data.output_dim(t) for t in self.tasks]
        self.dense = [kind in DENSE_TYPES for kind in self.types]
        hp = spec["training"]
        self.epochs, self.batch_size = int(hp["epochs"]), int(hp["batch_size"])
        self.lr, self.weight_decay = hp["lr"], hp["weight_decay"]
        self.generator = torch.Generator().manual_seed(
            network_seed(spec["seed"], self.network.name)
        )
        self.config_hash = spec_hash(spec)
        # What a checkpoint must match to be resumed: the spec, plus any observer's settings.
        self.state_key = self.config_hash
        # Built lazily after the first model, so the generator's draws keep their order
        # (initialisation first), whatever the caller does in between.
        self._inputs: _Inputs | None = None
        # The model fit() trained (for callers that inspect it afterwards).
        self.model: Architecture | None = None
        # The model and outcome table() last recorded (pipeline.sample_losses reads it); shared
        # with fresh() copies, so a pack retried in halves still reports to this trainer.
        self.final: dict = {}

    # ---- the pieces a training (or a pre-training phase) is made of -------------------------
    def method_options(self, method: str) -> dict:
        return dict(self.spec["training"].get(method, {}))

    def build_model(self) -> Architecture:
        return build_model(
            self.spec["architecture"], self.shape, self.widths, self.output_dims, self.generator,
            self.dense, SIZE_FRACTIONS[self.spec["size"]],
        ).to(self.device)  # fmt: skip

    def new_weighting(self) -> Weighting:
        weighting = self.spec["weighting"]
        return build_weighting(weighting, len(self.tasks), self.method_options(weighting)).to(
            self.device
        )

    @property
    def inputs(self) -> _Inputs:
        if self._inputs is None:
            self._inputs = _prepare(self.data, self.labels, self.tasks, self.device)
            if all(kind == "binary" for kind in self.types):
                # One fused loss over the (rows, tasks) logits instead of ~10 small ops per
                # task: small networks are bound by per-op overhead. Same values as
                # masked_loss, task by task.
                labelled = ~torch.isnan(self._inputs.y)
                self._fused_targets = FusedTargets(
                    torch.where(labelled, self._inputs.y, 0.0),
                    labelled.to(self._inputs.y.dtype),
                )
            else:
                self._fused_targets = None
        return self._inputs

    @property
    def fused_targets(self) -> FusedTargets | None:
        """All-binary networks: the targets of the fused loss (``masked_binary_losses``), for
        this network's steps and for a pack's (which stacks its members')."""
        _ = self.inputs
        return self._fused_targets

    def epoch_batches(self) -> list[torch.Tensor]:
        train_rows = self.inputs.rows["train"]
        order = train_rows[
            torch.randperm(train_rows.numel(), generator=self.generator).to(self.device)
        ]
        return [order[i : i + self.batch_size] for i in range(0, order.numel(), self.batch_size)]

    def batch_input(self, batch: torch.Tensor):
        return _take(self.inputs.x, batch)

    def losses_from_outputs(self, outputs: list[torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
        """Each task's masked mean loss on ``batch`` (0 for a task with no label in it)."""
        fused = self.fused_targets
        if fused is not None:
            safe_y, mask = fused
            return masked_binary_losses(torch.cat(outputs, dim=1), safe_y[batch], mask[batch])
        target = self.inputs.y[batch]
        dense = self.inputs.dense or {}
        return torch.stack(
            [
                dense_loss(o, dense[j][batch], self.types[j])
                if j in dense
                else masked_loss(o, target[:, j], self.types[j])
                for j, o in enumerate(outputs)
            ]
        )

    def labelled_in(self, batch: torch.Tensor) -> torch.Tensor:
        """(tasks,) bool: which tasks have at least one label in ``batch``."""
        return (~torch.isnan(self.inputs.y[batch])).any(dim=0)

    def task_losses(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return self.losses_from_outputs(model(self.batch_input(batch)), batch)

    def run_epoch(
        self,
        model: nn.Module,
        weighting: Weighting,
        optimizer: torch.optim.Optimizer,
        extra_loss: Callable[[], torch.Tensor] | None = None,
        observer: StepObserver | None = None,
    ) -> EpochResult:
        """One pass over freshly shuffled training batches; stops at a non-finite loss."""
        model.train()
        sums = torch.zeros(len(self.tasks), device=self.device)
        steps = 0
        for batch in self.epoch_batches():
            losses = self.task_losses(model, batch)
            total = weighting.combine(losses, model)
            if extra_loss is not None:
                total = total + extra_loss()
            if not torch.isfinite(total):
                return EpochResult(sums, steps, diverged=True)
            if observer is not None:
                observer.on_step(model, batch, losses)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            weighting.after_step()
            sums += losses.detach()
            steps += 1
        return EpochResult(sums, steps, diverged=False)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, diverged: bool) -> dict:
        """(split, task index) -> (loss, metric) on every split, in chunks of EVAL_CHUNK rows."""
        if self.inputs.dense or self.data.features.ndim == 4:
            n_classes = [self.data.n_classes[self.data.task_index(t)] for t in self.tasks]
            return _evaluate_chunked(model, self.inputs, self.types, n_classes, diverged)
        return _evaluate(model, self.inputs, self.types, diverged)

    # ---- the recorded training, in pieces a packed training shares ------------------------
    def fresh(self) -> Trainer:
        """A new trainer for the same network (its generator back at the start)."""
        trainer = Trainer(
            self.data, self.labels, self.spec, self.device, self.log, self.checkpoint,
            self.observer,
        )  # fmt: skip
        trainer.state_key = self.state_key
        trainer.final = self.final
        return trainer

    def labelled_counts(self) -> dict:
        """(split, task index) -> labelled rows."""
        inputs = self.inputs
        return {
            (s, j): int((~torch.isnan(inputs.y[inputs.rows[s], j])).sum()) for s in SPLITS
            for j in range(len(self.tasks))
        }  # fmt: skip

    def learned_rows(
        self, values: dict[str, list[float]], epoch: int, elapsed: float, n_labelled: dict
    ) -> list[dict]:
        """What a method learned (task weights, AdaShare's policy) as train-split rows."""
        tasks, types = self.tasks, self.types
        return [
            {"task": tasks[j], "task_type": types[j], "split": "train", "epoch": epoch,
             "metric": name, "value": float(v), "n_labelled": n_labelled[("train", j)],
             "wall_time_s": elapsed}
            for name, per_task in values.items() for j, v in enumerate(per_task)
        ]  # fmt: skip

    def evaluation_rows(
        self, evaluation: dict, epoch: int, elapsed: float, n_labelled: dict
    ) -> list[dict]:
        """Each split's loss and metric rows of one epoch."""
        tasks, types = self.tasks, self.types
        rows = []
        for (split, j), (loss, metric) in evaluation.items():
            for metric_name, value in (("loss", loss), (METRIC_OF[types[j]], metric)):
                rows.append({
                    "task": tasks[j], "task_type": types[j], "split": split,
                    "epoch": epoch, "metric": metric_name, "value": value,
                    "n_labelled": n_labelled[(split, j)], "wall_time_s": elapsed,
                })  # fmt: skip
        return rows

    def model_cost(self, model: nn.Module) -> tuple[int, float]:
        """(multiply-adds, cost) of the model actually trained (AdaShare: its fixed policy)."""
        macs = int(model.macs())
        return macs, macs / reference_macs(self.spec["architecture"], self.shape)

    def new_optimizer(self, model: nn.Module, weighting: Weighting) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            list(model.parameters()) + list(weighting.parameters()),
            lr=self.lr,
            weight_decay=self.weight_decay,
            # One fused kernel per step instead of ~8 per parameter: small nets are launch-bound.
            fused=True,
        )

    def resume(
        self, resumed: dict, optimizer: torch.optim.Optimizer, weighting: Weighting
    ) -> tuple[list[dict], int]:
        """Restore a checkpoint's optimiser, weighting, RNG and observer state; return the
        rows so far and the first epoch still to train."""
        optimizer.load_state_dict(resumed["optimizer"])
        weighting.load_state_dict(resumed["weighting"])
        self.generator.set_state(resumed["generator"])
        if self.observer is not None:
            self.observer.load_state_dict(resumed["observer"])
        self.log(f"resumed from {self.checkpoint.path} after epoch {resumed['epoch']}")
        return list(resumed["epoch_rows"]), resumed["epoch"] + 1

    def checkpoint_state(
        self,
        epoch: int,
        elapsed: float,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        weighting: Weighting,
        epoch_rows: list[dict],
    ) -> dict:
        return {
            "config_hash": self.state_key, "epoch": epoch, "elapsed": elapsed,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "weighting": weighting.state_dict(), "generator": self.generator.get_state(),
            "observer": self.observer.state_dict() if self.observer else {},
            "epoch_rows": epoch_rows,
        }  # fmt: skip

    def table(
        self,
        model: nn.Module,
        epoch_rows: list[dict],
        macs: int,
        cost: float,
        diverged_at: int | None,
    ) -> pa.Table:
        """The network's METRICS table: its rows plus its constant columns."""
        tasks = self.tasks
        self.final.update(model=model, diverged=diverged_at is not None)
        constant = {
            "dataset": self.data.name, "network": self.network.name, "tasks": tasks,
            "n_tasks": len(tasks), "size": self.spec["size"], "width": self.recorded_width(model),
            "cost": cost, "macs": macs, "architecture": self.spec["architecture"],
            "weighting": self.spec["weighting"], "seed": int(self.spec["seed"]),
            "epochs": self.epochs, "device": str(self.device), "config_hash": self.config_hash,
            "versions": package_versions(),
            "status": "ok" if diverged_at is None else "diverged", "diverged_epoch": diverged_at,
        }  # fmt: skip
        # The spec itself rides in the run file's metadata: `export` names what changed.
        return with_spec(rows_to_table(epoch_rows, constant), self.spec)

    def recorded_width(self, model: nn.Module) -> int:
        """The ``width`` column: the trunk's first layer width, or for a user's trunk (no
        widths of ours) its output features or channels."""
        trunk = getattr(model, "trunk", None)
        if trunk is not None and hasattr(trunk, "out_shape"):
            return int(trunk.out_features)
        return int(self.widths[0])

    def start(self) -> TrainingRun:
        """The training's state before its first epoch still to train: a checkpoint's if one
        matches (its rows so far included), else a new model (after any pre-training phase)."""
        model, weighting = self.build_model(), self.new_weighting()
        self.model = model
        n_labelled = self.labelled_counts()
        epoch_rows: list[dict] = []
        resumed = self.checkpoint.load(self.state_key)
        started = time.perf_counter()
        if resumed is not None:
            model.load_state_dict(resumed["model"])
        else:
            pretrained = model.pretrain(self)
            if pretrained is not None:
                model = self.model = pretrained.model
                elapsed = time.perf_counter() - started
                epoch_rows += self.learned_rows(pretrained.recorded, 0, elapsed, n_labelled)
        macs, cost = self.model_cost(model)
        optimizer = self.new_optimizer(model, weighting)
        run = TrainingRun(model, weighting, optimizer, n_labelled, macs, cost, epoch_rows)
        run.started = started
        if resumed is not None:
            run.epoch_rows, run.first_epoch = self.resume(resumed, optimizer, weighting)
            run.elapsed0 = resumed["elapsed"]
            run.started = time.perf_counter() - resumed["elapsed"]
        return run

    def close_epoch(
        self,
        run: TrainingRun,
        epoch: int,
        result: EpochResult,
        elapsed: float,
        learned: dict | None = None,
        evaluation: dict | None = None,
    ) -> bool:
        """Everything after an epoch's steps, for a training alone and a pack's member alike:
        divergence, the weighting's and observer's epoch end, evaluation (unless the caller
        already has it), the epoch's rows, the log line and a due checkpoint. ``learned``: what
        the method learned, if taken earlier (a pack member that diverged mid-epoch). Returns
        whether the training is over."""
        model, weighting = run.model, run.weighting
        if result.diverged:
            run.diverged_at = epoch
        if learned is None:
            learned = {**weighting.recorded(), **model.recorded()}
        if run.diverged_at is None:
            weighting.end_epoch(epoch, result.mean_losses())
        if self.observer is not None:
            self.observer.end_epoch(epoch)
        if evaluation is None:
            evaluation = self.evaluate(model, run.diverged_at is not None)
        run.epoch_rows += self.evaluation_rows(evaluation, epoch, elapsed, run.n_labelled)
        run.epoch_rows += self.learned_rows(learned, epoch, elapsed, run.n_labelled)
        self.log(_log_line(epoch, self.epochs, self.tasks, evaluation, elapsed, run.diverged_at))
        run.done = run.diverged_at is not None or epoch == self.epochs
        # Asked after the last epoch too: a Checkpointer never saves then (the output file
        # follows), export's in-memory stand-in keeps the final weights.
        if run.diverged_at is None and self.checkpoint.due(final=epoch == self.epochs):
            self.checkpoint.save(
                self.checkpoint_state(
                    epoch, elapsed, model, run.optimizer, weighting, run.epoch_rows
                )
            )
        return run.done

    def finish(self, run: TrainingRun) -> pa.Table:
        return self.table(run.model, run.epoch_rows, run.macs, run.cost, run.diverged_at)

    def fit(self) -> pa.Table:
        run = self.start()
        for epoch in range(run.first_epoch, self.epochs + 1):
            result = self.run_epoch(run.model, run.weighting, run.optimizer, observer=self.observer)
            if self.close_epoch(run, epoch, result, time.perf_counter() - run.started):
                break
        return self.finish(run)


def rows_to_table(rows: list[dict], constant: dict) -> pa.Table:
    """Per-row values plus the network's constant columns, as a METRICS table. A constant
    column is repeated by Arrow, not built from a Python list per row: ``tasks`` of a network
    of 617 tasks is a list of 617 names in each of its ~40,000 rows."""
    per_row = set().union(*rows) if rows else set(METRICS.names)
    columns = [
        pa.array([row[name] if name in row else constant[name] for row in rows], type=field.type)
        if name in per_row
        else pa.repeat(pa.scalar(constant[name], type=field.type), len(rows))
        for name, field in zip(METRICS.names, METRICS)
    ]
    return pa.Table.from_arrays(columns, schema=METRICS)


def failed_table(
    spec: dict, dataset: str, task_types: Sequence[str], device: str, wall_time_s: float
) -> pa.Table:
    """The METRICS rows of a training that raised instead of finishing (a control's, recorded
    rather than fatal: pipeline.jobs): one NaN loss per task and split at epoch 0, status
    "failed", ``dataset`` the data's name as a finished training records it, ``wall_time_s``
    the time spent before the error. Every query that keeps ``status = 'ok'`` rows, or drops
    networks with any other status from the solve, leaves it out; cost and macs are unknown
    (NaN, 0)."""
    from .schema import with_spec

    tasks = list(spec["tasks"])
    constant = {
        "dataset": dataset, "network": Network(tuple(tasks), spec["size"]).name,
        "tasks": tasks, "n_tasks": len(tasks), "size": spec["size"], "width": 0,
        "cost": float("nan"), "macs": 0, "architecture": spec["architecture"],
        "weighting": spec["weighting"], "seed": int(spec["seed"]),
        "epochs": int(spec["training"]["epochs"]), "device": device,
        "config_hash": spec_hash(spec), "versions": package_versions(), "status": "failed",
        "diverged_epoch": None, "epoch": 0, "metric": "loss", "value": float("nan"),
        "n_labelled": 0, "wall_time_s": float(wall_time_s),
    }  # fmt: skip
    rows = [
        {"task": task, "task_type": kind, "split": split}
        for task, kind in zip(tasks, task_types)
        for split in SPLITS
    ]
    return with_spec(rows_to_table(rows, constant), spec)


def train_network(
    data: Dataset,
    labels: np.ndarray,
    spec: dict,
    device: torch.device,
    log: Callable[[str], None] = lambda line: None,
    checkpoint: Checkpointer | None = None,
    observer: StepObserver | None = None,
) -> pa.Table:
    """Train the network ``spec`` describes; return its METRICS rows (see :class:`Trainer`)."""
    trainer = Trainer(data, labels, spec, device, log, checkpoint, observer)
    return trainer.fit()


@torch.no_grad()
def _evaluate(model, inputs: _Inputs, types: list[str], diverged: bool) -> dict:
    model.eval()
    outputs = None
    if not diverged:  # a diverged network's scores are NaN: no forward to pay for
        outputs = {split: [model(batch) for batch in _eval_batches(inputs, split)]
                   for split in SPLITS}  # fmt: skip
    return score_outputs(outputs, inputs, types)


def _eval_batches(inputs: _Inputs, split: str) -> list:
    cached = inputs.eval_inputs
    return cached[split] if cached is not None else _chunked(inputs.x, inputs.rows[split])


# Tasks whose output is one column: scored from one (tasks, rows) matrix (_score_columns).
_ONE_OUTPUT = ("binary", "regression")


def score_outputs(
    outputs: dict[str, list[list[torch.Tensor]]] | None, inputs: _Inputs, types: list[str]
) -> dict:
    """(split, task index) -> (loss, metric) from each split's per-chunk model outputs (chunks
    of EVAL_CHUNK rows, in row order); ``None``: a diverged network, every value NaN. A
    training alone and a pack (whose members' outputs come from one packed forward) share it.

    Every value is the one ``_vector_score`` gives task by task, bit for bit (test); one-output
    tasks take a shorter path to it, because a network of hundreds of tasks scores each of them
    on every split every epoch (ToxCast's all-in-one network spent 40 % of its training there)."""
    scores = {}
    one_output = [j for j, kind in enumerate(types) if kind in _ONE_OUTPUT]
    for split in SPLITS:
        if outputs is None:
            for j in range(len(types)):
                scores[(split, j)] = (float("nan"), float("nan"))
            continue
        chunks = outputs[split]
        target = inputs.y[inputs.rows[split]]
        for j, kind in enumerate(types):
            if kind not in _ONE_OUTPUT:
                out = torch.cat([c[j] for c in chunks])
                scores[(split, j)] = _vector_score(out, target[:, j], kind, inputs.scale[j])
        if one_output:
            labels = _split_labels(inputs, split, one_output)
            columns = _columns(chunks, one_output)
            for i, j in enumerate(one_output):
                scores[(split, j)] = _column_score(columns, i, labels, types[j], inputs.scale[j])
    return {(split, j): scores[(split, j)] for split in SPLITS for j in range(len(types))}


def _split_labels(inputs: _Inputs, split: str, tasks: list[int]) -> _SplitLabels:
    if split not in inputs.split_labels:
        target = inputs.y[inputs.rows[split]]
        columns = [target[:, j] for j in tasks]
        labelled = [~torch.isnan(column) for column in columns]
        numpy = [column.cpu().numpy() for column in columns]
        positions = [np.flatnonzero(~np.isnan(column)) for column in numpy]
        inputs.split_labels[split] = _SplitLabels(
            labelled=labelled,
            safe=[torch.where(m, c, torch.zeros_like(c)) for m, c in zip(labelled, columns)],
            count=[m.sum() for m in labelled],
            positions=positions,
            targets=[column[rows] for column, rows in zip(numpy, positions)],
        )
    return inputs.split_labels[split]


def _columns(chunks: list[list[torch.Tensor]], tasks: list[int]) -> torch.Tensor:
    """The one-output ``tasks``' outputs as a (tasks, rows) matrix, one concatenation in all
    rather than one per task. Each task's row starts at a 64-byte boundary, as a tensor of its
    own would: some CPU kernels round by where their data starts."""
    by_rows = torch.cat([torch.cat([chunk[j] for j in tasks], dim=1) for chunk in chunks])
    rows = by_rows.shape[0]
    per_line = 64 // by_rows.element_size()
    columns = by_rows.new_empty(len(tasks), -(-rows // per_line) * per_line)
    columns[:, :rows].copy_(by_rows.t())
    return columns[:, :rows]


def _column_score(
    columns: torch.Tensor, i: int, labels: _SplitLabels, kind: str, scale: float
) -> tuple:
    """(loss, metric) of the ``i``-th one-output task: masked_loss's and task_metric's steps on
    labels prepared once."""
    out = columns[i].unsqueeze(1)
    if not labels.positions[i].size:
        loss = float(out.sum() * 0.0)  # masked_loss of a task without labels here
    else:
        per_row = safe_row_losses(out, labels.safe[i], kind) * labels.labelled[i]
        loss = float(per_row.sum() / labels.count[i])
    labelled_out = out.double().cpu().numpy()[labels.positions[i]]
    return loss, labelled_metric(labels.targets[i], labelled_out, kind, scale)


def _vector_score(out: torch.Tensor, target: torch.Tensor, kind: str, scale: float) -> tuple:
    """(loss, metric) of one vector task's outputs over a split's rows."""
    loss = float(masked_loss(out, target, kind))
    metric = task_metric(out.double().cpu().numpy(), target.cpu().numpy(), kind, scale)
    return loss, metric


@torch.no_grad()
def _evaluate_chunked(
    model, inputs: _Inputs, types: list[str], n_classes: list[int], diverged: bool
) -> dict:
    """``_evaluate`` for image inputs and dense tasks: chunks of about EVAL_PIXELS input
    pixels; a dense task's loss and metric are accumulated per chunk (DenseScore), so a
    split's per-pixel outputs are never held at once. Vector tasks keep their (small) outputs
    and are scored as in ``_evaluate``."""
    model.eval()
    dense = inputs.dense or {}
    sample = inputs.x[:1]
    per_sample = max(1, int(np.prod(sample.shape[1:])))
    chunk = max(1, min(EVAL_CHUNK, EVAL_PIXELS // per_sample))
    result = {}
    for split in SPLITS:
        rows = inputs.rows[split]
        scores = {j: DenseScore(types[j], n_classes[j], inputs.scale[j]) for j in dense}
        vector: dict[int, list[torch.Tensor]] = {j: [] for j in range(len(types)) if j not in dense}
        for i in range(0, rows.numel(), chunk):
            ids = rows[i : i + chunk]
            outputs = model(_take(inputs.x, ids))
            for j, out in enumerate(outputs):
                if j in dense:
                    scores[j].add(out, dense[j][ids])
                else:
                    vector[j].append(out)
        target = inputs.y[rows]
        for j, kind in enumerate(types):
            if diverged:
                result[(split, j)] = (float("nan"), float("nan"))
            elif j in dense:
                result[(split, j)] = scores[j].result()
            else:
                out = torch.cat(vector[j])
                result[(split, j)] = _vector_score(out, target[:, j], kind, inputs.scale[j])
    return result


def _log_line(epoch, epochs, tasks, evaluation, elapsed, diverged_at) -> str:
    parts = [f"epoch {epoch}/{epochs}"]
    for split in SPLITS:
        values = [evaluation[(split, j)][0] for j in range(len(tasks))]
        if len(tasks) > LOG_TASKS:
            # Hundreds of tasks: a line per epoch, not tens of kilobytes (the Parquet has all).
            finite = np.array(values)[np.isfinite(values)]
            losses = (
                f"mean={finite.mean():.5f} min={finite.min():.5f} max={finite.max():.5f} "
                f"over {finite.size} of {len(tasks)} tasks"
                if finite.size
                else f"no finite loss in {len(tasks)} tasks"
            )
        else:
            losses = " ".join(f"{t}={v:.5f}" for t, v in zip(tasks, values))
        parts.append(f"{split}_loss {losses}")
    parts.append(f"{elapsed:.2f}s")
    if diverged_at is not None:
        parts.append(f"DIVERGED (non-finite loss in epoch {diverged_at})")
    return " | ".join(parts)


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - debugging aid
    spec = json.loads((argv or sys.argv[1:])[0])
    data = load_dataset(spec["dataset"])
    from .split import make_split

    labels = make_split(data.n_rows, spec["split"]["fractions"], spec["split"]["seed"])
    print(train_network(data, labels, spec, resolve_device(), print).num_rows)
