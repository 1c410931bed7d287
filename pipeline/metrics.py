"""Per-task losses and metrics over labelled cells only (missing labels are masked out)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata
from torch.nn import functional as F

METRIC_OF = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "rmse"}


def masked_loss(output: torch.Tensor, target: torch.Tensor, task_type: str) -> torch.Tensor:
    """Mean loss over the labelled rows of one task (NaN targets are missing labels)."""
    labelled = ~torch.isnan(target)
    count = labelled.sum()
    if count == 0:
        return output.sum() * 0.0  # keeps the graph; contributes nothing
    safe = torch.where(labelled, target, torch.zeros_like(target))
    if task_type == "binary":
        per_row = F.binary_cross_entropy_with_logits(output[:, 0], safe, reduction="none")
    elif task_type == "multiclass":
        per_row = F.cross_entropy(output, safe.long(), reduction="none")
    else:
        per_row = (output[:, 0] - safe) ** 2
    return (per_row * labelled).sum() / count


def masked_binary_losses(
    logits: torch.Tensor, safe_target: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``masked_loss`` of several binary tasks at once: (rows, tasks) logits, targets with
    missing labels set to 0 and a 0/1 mask of labelled cells; a task without labels gets 0."""
    per_cell = F.binary_cross_entropy_with_logits(logits, safe_target, reduction="none")
    # Rows are the second-to-last axis, so a (networks, rows, tasks) pack reduces the same way.
    return (per_cell * mask).sum(-2) / mask.sum(-2).clamp_min(1)


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney ROC-AUC (ties count half); NaN when only one class is present."""
    positives = y == 1
    n_pos = int(positives.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def task_metric(
    output: np.ndarray, target: np.ndarray, task_type: str, scale: float = 1.0
) -> float:
    """The task's metric on labelled rows: ROC-AUC, accuracy, or RMSE in original units."""
    labelled = ~np.isnan(target)
    if not labelled.any():
        return float("nan")
    y, out = target[labelled], output[labelled]
    if not np.isfinite(out).all():
        return float("nan")
    if task_type == "binary":
        return roc_auc(y, out[:, 0])
    if task_type == "multiclass":
        return float((out.argmax(axis=1) == y).mean())
    return float(np.sqrt(np.mean((out[:, 0] - y) ** 2)) * scale)
