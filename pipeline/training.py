"""Train one network and record every epoch's per-task, per-split losses and metrics.

Entry points: :func:`train_network` (pure: data in, Arrow table out) and
:func:`run_snakemake_job` (what the ``train`` rule calls, in a Snakemake thread, a spawned job or
a Dask worker alike: it loads the cached dataset, trains, and writes the Parquet atomically).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

import numpy as np
import pyarrow as pa
import torch

from .datasets import Dataset, load_dataset
from .metrics import METRIC_OF, masked_binary_losses, masked_loss, task_metric
from .models import ModelShape, build_model, reference_macs, widths_for_size
from .schema import METRICS, SPLITS, write_table
from .split import read_split
from .sweep import Network, spec_hash
from .weighting import build_weighting

EVAL_CHUNK = 8192


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
    x = _features(data, labels, device)
    rows = {s: torch.from_numpy(np.flatnonzero(labels == s)).to(device) for s in SPLITS}
    return _Inputs(x=x, y=torch.from_numpy(y).to(device), rows=rows, scale=scale)


_feature_cache: dict[tuple, object] = {}
_feature_lock = threading.Lock()


def _features(data: Dataset, labels: np.ndarray, device: torch.device):
    """The model-ready feature matrix, built once per (dataset, split, device) in a process:
    every network of a sweep shares it (read-only), so a job does not rebuild it."""
    from .models.layers import SparseMatrix

    train = labels == "train"
    key = (id(data), hashlib.sha1(train.tobytes()).hexdigest(), str(device))
    with _feature_lock:
        if key not in _feature_cache:
            x = torch.from_numpy(data.features).to(device)
            if data.binary_features:
                x = SparseMatrix(x)
            else:
                mean = torch.from_numpy(data.features[train].mean(axis=0)).to(device)
                std = torch.from_numpy(data.features[train].std(axis=0)).to(device)
                x = ((x - mean) / torch.where(std == 0, 1.0, std)).float()
            if len(_feature_cache) >= 4:
                _feature_cache.pop(next(iter(_feature_cache)))
            _feature_cache[key] = x
        return _feature_cache[key]


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


def train_network(
    data: Dataset,
    labels: np.ndarray,
    spec: dict,
    device: torch.device,
    log: Callable[[str], None] = lambda line: None,
    checkpoint: Checkpointer | None = None,
) -> pa.Table:
    """Train the network ``spec`` describes; return its METRICS rows (every epoch kept).

    Besides each split's loss and metric, every epoch records what the method learned as
    split-"train" rows: ``task_weight`` per task (all weightings; 1.0 for equal) and whatever
    else the weighting's ``recorded()`` returns (``log_variance``, ``grad_norm``). AdaShare
    first searches its skip policy in this job, then retrains a fresh network with the policy
    fixed; the recorded epochs are the retrain's, with ``policy_block_<k>`` rows (the search's
    final execute probabilities at epoch 0, the fixed 0/1 decisions at every epoch)."""
    checkpoint = checkpoint or Checkpointer(None)
    tasks = list(spec["tasks"])
    network = Network(tuple(tasks), spec["size"])
    cols = [data.task_index(t) for t in tasks]
    types = [data.task_types[c] for c in cols]
    shape = ModelShape(
        in_features=data.features.shape[1],
        hidden=tuple(spec["model"]["hidden"]),
        head_hidden=tuple(spec["model"]["head_hidden"]),
        binary_input=data.binary_features,
    )
    widths = widths_for_size(spec["architecture"], shape, spec["size"])
    output_dims = [data.output_dim(t) for t in tasks]
    hp = spec["training"]

    generator = torch.Generator().manual_seed(network_seed(spec["seed"], network.name))

    def build():
        return build_model(spec["architecture"], shape, widths, output_dims, generator).to(device)

    def new_weighting():
        options = hp.get(spec["weighting"], {})
        return build_weighting(spec["weighting"], len(tasks), options).to(device)

    model, weighting = build(), new_weighting()
    inputs = _prepare(data, labels, tasks, device)
    train_rows = inputs.rows["train"]
    batch_size = int(hp["batch_size"])

    def epoch_batches() -> list[torch.Tensor]:
        order = train_rows[torch.randperm(train_rows.numel(), generator=generator).to(device)]
        return [order[i : i + batch_size] for i in range(0, order.numel(), batch_size)]

    fused_binary = all(kind == "binary" for kind in types)
    if fused_binary:
        # One fused loss over the (rows, tasks) logits instead of ~10 small ops per task: small
        # networks are bound by per-op overhead. Same values as masked_loss, task by task.
        labelled = ~torch.isnan(inputs.y)
        safe_y, mask = torch.where(labelled, inputs.y, 0.0), labelled.to(inputs.y.dtype)

    def task_losses(net, batch: torch.Tensor) -> torch.Tensor:
        outputs = net(_take(inputs.x, batch))
        if fused_binary:
            return masked_binary_losses(torch.cat(outputs, dim=1), safe_y[batch], mask[batch])
        target = inputs.y[batch]
        return torch.stack([masked_loss(o, target[:, j], types[j]) for j, o in enumerate(outputs)])

    n_labelled = {
        (s, j): int((~torch.isnan(inputs.y[inputs.rows[s], j])).sum()) for s in SPLITS
        for j in range(len(tasks))
    }  # fmt: skip

    def learned_rows(values: dict[str, list[float]], epoch: int, elapsed: float) -> list[dict]:
        """What a method learned (task weights, AdaShare's policy) as train-split rows."""
        return [
            {"task": tasks[j], "task_type": types[j], "split": "train", "epoch": epoch,
             "metric": name, "value": float(v), "n_labelled": n_labelled[("train", j)],
             "wall_time_s": elapsed}
            for name, per_task in values.items() for j, v in enumerate(per_task)
        ]  # fmt: skip

    config_hash = spec_hash(spec)
    diverged_at: int | None = None
    epoch_rows: list[dict] = []
    first_epoch, previous_elapsed = 1, 0.0
    resumed = checkpoint.load(config_hash)
    started = time.perf_counter()
    if resumed is not None:
        model.load_state_dict(resumed["model"])
    elif hasattr(model, "search_policy"):
        # AdaShare: learn the skip policy, fix it, retrain a fresh network with it (in-job).
        searched = model
        probabilities = searched.search_policy(
            epoch_batches, task_losses, new_weighting(), hp["lr"], hp["weight_decay"],
            hp.get(spec["architecture"], {}), log,
        )  # fmt: skip
        model = build()
        model.adopt_policy(searched)
        del searched
        search_values = {
            f"policy_block_{k + 1}": probabilities[:, k].tolist()
            for k in range(probabilities.shape[1])
        }
        epoch_rows += learned_rows(search_values, 0, time.perf_counter() - started)
    # Cost from the model actually trained (AdaShare: under its fixed policy).
    macs = int(model.macs())
    cost = macs / reference_macs(spec["architecture"], shape)

    optimizer = torch.optim.Adam(
        list(model.parameters()) + list(weighting.parameters()),
        lr=hp["lr"],
        weight_decay=hp["weight_decay"],
        # One fused kernel per step instead of ~8 per parameter: small nets are launch-bound.
        fused=True,
    )
    records: dict[str, list] = {name: [] for name in METRICS.names}
    constant = {
        "dataset": data.name, "network": network.name, "tasks": tasks, "n_tasks": len(tasks),
        "size": spec["size"], "width": int(widths[0]), "cost": cost, "macs": macs,
        "architecture": spec["architecture"], "weighting": spec["weighting"],
        "seed": int(spec["seed"]), "epochs": int(hp["epochs"]), "device": str(device),
        "config_hash": config_hash, "versions": package_versions(),
    }  # fmt: skip
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer"])
        weighting.load_state_dict(resumed["weighting"])
        generator.set_state(resumed["generator"])
        epoch_rows = list(resumed["epoch_rows"])
        first_epoch, previous_elapsed = resumed["epoch"] + 1, resumed["elapsed"]
        started = time.perf_counter() - previous_elapsed
        log(f"resumed from {checkpoint.path} after epoch {resumed['epoch']}")

    for epoch in range(first_epoch, int(hp["epochs"]) + 1):
        model.train()
        sums = torch.zeros(len(tasks), device=device)
        steps = 0
        for batch in epoch_batches():
            losses = task_losses(model, batch)
            total = weighting.combine(losses, model)
            if not torch.isfinite(total):
                diverged_at = epoch
                break
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            weighting.after_step()
            sums += losses.detach()
            steps += 1
        learned = {**weighting.recorded(), **getattr(model, "recorded", dict)()}
        if diverged_at is None:
            weighting.end_epoch(epoch, (sums / max(steps, 1)).tolist())
        evaluation = _evaluate(model, inputs, types, diverged_at is not None)
        elapsed = time.perf_counter() - started
        for (split, j), (loss, metric) in evaluation.items():
            for metric_name, value in (("loss", loss), (METRIC_OF[types[j]], metric)):
                epoch_rows.append({
                    "task": tasks[j], "task_type": types[j], "split": split, "epoch": epoch,
                    "metric": metric_name, "value": value, "n_labelled": n_labelled[(split, j)],
                    "wall_time_s": elapsed,
                })  # fmt: skip
        epoch_rows += learned_rows(learned, epoch, elapsed)
        log(_log_line(epoch, int(hp["epochs"]), tasks, evaluation, elapsed, diverged_at))
        if diverged_at is not None:
            break
        if checkpoint.due(final=epoch == int(hp["epochs"])):
            checkpoint.save({
                "config_hash": config_hash, "epoch": epoch, "elapsed": elapsed,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "weighting": weighting.state_dict(), "generator": generator.get_state(),
                "epoch_rows": epoch_rows,
            })  # fmt: skip

    status = "ok" if diverged_at is None else "diverged"
    for row in epoch_rows:
        for name in METRICS.names:
            if name in row:
                records[name].append(row[name])
            elif name == "status":
                records[name].append(status)
            elif name == "diverged_epoch":
                records[name].append(diverged_at)
            else:
                records[name].append(constant[name])
    return pa.table(records, schema=METRICS)


@torch.no_grad()
def _evaluate(model, inputs: _Inputs, types: list[str], diverged: bool) -> dict:
    model.eval()
    result = {}
    for split in SPLITS:
        rows = inputs.rows[split]
        chunks = [
            model(_take(inputs.x, rows[i : i + EVAL_CHUNK]))
            for i in range(0, rows.numel(), EVAL_CHUNK)
        ]
        target = inputs.y[rows]
        for j, kind in enumerate(types):
            out = torch.cat([c[j] for c in chunks])
            if diverged:
                result[(split, j)] = (float("nan"), float("nan"))
                continue
            loss = float(masked_loss(out, target[:, j], kind))
            metric = task_metric(
                out.double().cpu().numpy(), target[:, j].cpu().numpy(), kind, inputs.scale[j]
            )
            result[(split, j)] = (loss, metric)
    return result


def _log_line(epoch, epochs, tasks, evaluation, elapsed, diverged_at) -> str:
    parts = [f"epoch {epoch}/{epochs}"]
    for split in SPLITS:
        losses = " ".join(f"{t}={evaluation[(split, j)][0]:.5f}" for j, t in enumerate(tasks))
        parts.append(f"{split}_loss {losses}")
    parts.append(f"{elapsed:.2f}s")
    if diverged_at is not None:
        parts.append(f"DIVERGED (non-finite loss in epoch {diverged_at})")
    return " | ".join(parts)


def run_snakemake_job(input: dict, output: dict, params: dict, log: list, threads: int = 1) -> None:
    """The ``train`` rule's body: the same call in a Snakemake thread, a job process or a
    Dask worker."""
    torch.set_num_threads(max(1, int(threads)))
    spec = params["spec"]
    device = resolve_device()
    data = load_dataset(spec["dataset"])
    labels = read_split(input["split"], data.n_rows)
    with open(log[0], "w") as log_file:

        def write(line: str) -> None:
            log_file.write(line + "\n")
            log_file.flush()

        write(f"network {Network(tuple(spec['tasks']), spec['size']).name} on {device}")
        checkpoint = Checkpointer(params.get("checkpoint"))
        table = train_network(data, labels, spec, device, write, checkpoint)
    write_table(table, output["metrics"], METRICS)
    checkpoint.remove()


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - debugging aid
    spec = json.loads((argv or sys.argv[1:])[0])
    data = load_dataset(spec["dataset"])
    from .split import make_split

    labels = make_split(data.n_rows, spec["split"]["fractions"], spec["split"]["seed"])
    print(train_network(data, labels, spec, resolve_device(), print).num_rows)
