"""Each labelled test value's loss at the final epoch (the TEST_LOSSES table), from the final
model: what a paired bootstrap over test rows needs (pipeline/gains.py).

Called once per network after its last epoch, on the model the network's METRICS table was
recorded from (:meth:`pipeline.training.Trainer.table` keeps it): a training alone and a packed
one call the same function on bitwise the same weights, so both write the same values.
The rows are the split's test rows in the order the evaluation scores them; a row's loss is
the term the recorded test loss averages (vector tasks: ``metrics.row_losses``; dense tasks:
the row's labelled pixels' mean, with their count as ``weight``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from .metrics import dense_loss_terms, row_losses
from .schema import TEST_LOSSES, write_table


def samples_file(metrics_file: str | os.PathLike, results: str | os.PathLike | None = None) -> Path:
    """A network's TEST_LOSSES file: ``<results>/samples/`` + the path of its metrics file
    under ``<results>/runs/`` (rules/train.smk writes both). ``results``: the results folder,
    where the metrics path is relative to another working directory (the manifest's are)."""
    path = Path(metrics_file)
    runs = path.parents[3]  # runs/<method>/seed<s>/<size>/<stem>.parquet
    if runs.name != "runs":
        raise ValueError(f"{metrics_file}: not a network file under a runs/ folder")
    return Path(results or runs.parent) / "samples" / path.relative_to(runs)


def _empty() -> pa.Table:
    return TEST_LOSSES.empty_table()


@torch.no_grad()
def sample_losses(trainer, model: torch.nn.Module, diverged: bool) -> pa.Table:
    """The TEST_LOSSES rows of ``trainer``'s network with ``model`` as its final model (no
    rows when it diverged: its recorded test losses are NaN)."""
    from .training import EVAL_CHUNK, EVAL_PIXELS, _chunked, _take

    if diverged:
        return _empty()
    inputs = trainer.inputs
    rows = inputs.rows["test"]
    dense = inputs.dense or {}
    model.eval()
    if dense or trainer.data.features.ndim == 4:
        # Chunks of about EVAL_PIXELS input pixels, as the evaluation takes them.
        per_sample = max(1, int(np.prod(inputs.x[:1].shape[1:])))
        chunk = max(1, min(EVAL_CHUNK, EVAL_PIXELS // per_sample))
        batches = [_take(inputs.x, rows[i : i + chunk]) for i in range(0, rows.numel(), chunk)]
        ids = [rows[i : i + chunk] for i in range(0, rows.numel(), chunk)]
    else:
        cached = inputs.eval_inputs
        batches = cached["test"] if cached is not None else _chunked(inputs.x, rows)
        ids = [rows[i : i + EVAL_CHUNK] for i in range(0, rows.numel(), EVAL_CHUNK)]
    # Per task: (losses, weights) over the split's rows, chunk by chunk.
    losses: list[list[torch.Tensor]] = [[] for _ in trainer.tasks]
    weights: list[list[torch.Tensor]] = [[] for _ in trainer.tasks]
    vector: list[list[torch.Tensor]] = [[] for _ in trainer.tasks]
    for batch, batch_ids in zip(batches, ids):
        for j, out in enumerate(model(batch)):
            if j in dense:
                per_pixel, labelled = dense_loss_terms(out, dense[j][batch_ids], trainer.types[j])
                count = labelled.sum(dim=(1, 2))
                total = per_pixel.double().sum(dim=(1, 2))
                losses[j].append((total / count.clamp_min(1)).float())
                weights[j].append(count.to(torch.int32))
            else:
                vector[j].append(out)
    target = inputs.y[rows]
    columns: dict[str, list[np.ndarray]] = {"row": [], "task": [], "loss": [], "weight": []}
    row_ids = rows.cpu().numpy().astype(np.int32)
    for j, task in enumerate(trainer.tasks):
        if j in dense:
            loss = torch.cat(losses[j]).cpu().numpy()
            weight = torch.cat(weights[j]).cpu().numpy()
            keep = weight > 0
        else:
            # Over the whole split's outputs at once, as the recorded loss is computed.
            out = torch.cat(vector[j])
            loss = row_losses(out, target[:, j], trainer.types[j]).cpu().numpy()
            keep = ~torch.isnan(target[:, j]).cpu().numpy()
            weight = np.ones(loss.shape, dtype=np.int32)
        columns["row"].append(row_ids[keep])
        columns["task"].append(np.full(int(keep.sum()), task, dtype=object))
        columns["loss"].append(loss[keep].astype(np.float32, copy=False))
        columns["weight"].append(weight[keep])
    n = sum(len(r) for r in columns["row"])
    table = {name: np.concatenate(parts) if parts else [] for name, parts in columns.items()}
    return pa.table(
        {
            "network": pa.repeat(pa.scalar(trainer.network.name, pa.string()), n),
            "seed": pa.array(np.full(n, int(trainer.spec["seed"]), dtype=np.int64)),
            "config_hash": pa.repeat(pa.scalar(trainer.config_hash, pa.string()), n),
            "row": pa.array(table["row"], pa.int32()),
            "task": pa.array(table["task"], pa.string()),
            "loss": pa.array(table["loss"], pa.float32()),
            "weight": pa.array(table["weight"], pa.int32()),
        },
        schema=TEST_LOSSES,
    )


def final_sample_losses(trainer) -> pa.Table:
    """TEST_LOSSES of the model ``trainer`` last recorded a METRICS table from."""
    final = trainer.final
    if "model" not in final:
        raise RuntimeError(f"{trainer.network.name}: no final model recorded (not trained yet)")
    return sample_losses(trainer, final["model"], final["diverged"])


def write_sample_losses(table: pa.Table, path: str | os.PathLike) -> None:
    write_table(table, path, TEST_LOSSES)
