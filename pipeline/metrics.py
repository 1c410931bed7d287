"""Per-task losses and metrics over labelled cells only (missing labels are masked out).

Vector tasks (one label per sample): :func:`masked_loss`, :func:`task_metric`. Dense tasks (one
label per pixel): :func:`dense_loss` and :class:`DenseScore`, which accumulates a split's loss
and metric chunk by chunk (a split's outputs as images would not fit in memory at once).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

METRIC_OF = {
    "binary": "roc_auc",
    "multiclass": "accuracy",
    "regression": "rmse",
    "segmentation": "miou",  # mean intersection-over-union over the classes present
    "dense_regression": "mae",  # mean absolute error per labelled pixel, original units
    "normals": "angular_error",  # mean angle between predicted and true normal, degrees
}


def row_losses(output: torch.Tensor, target: torch.Tensor, task_type: str) -> torch.Tensor:
    """Each row's loss of one vector task (any value on rows without a label: mask them)."""
    labelled = ~torch.isnan(target)
    return safe_row_losses(output, torch.where(labelled, target, torch.zeros_like(target)), task_type)


def safe_row_losses(output: torch.Tensor, safe: torch.Tensor, task_type: str) -> torch.Tensor:
    """:func:`row_losses` with the missing labels already replaced by 0 (``safe``): an
    evaluation prepares them once per network rather than every epoch."""
    if task_type == "binary":
        return F.binary_cross_entropy_with_logits(output[:, 0], safe, reduction="none")
    if task_type == "multiclass":
        return F.cross_entropy(output, safe.long(), reduction="none")
    return (output[:, 0] - safe) ** 2


def masked_loss(output: torch.Tensor, target: torch.Tensor, task_type: str) -> torch.Tensor:
    """Mean loss over the labelled rows of one task (NaN targets are missing labels)."""
    labelled = ~torch.isnan(target)
    count = labelled.sum()
    if count == 0:
        return output.sum() * 0.0  # keeps the graph; contributes nothing
    return (row_losses(output, target, task_type) * labelled).sum() / count


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
    if n_pos == 0 or n_neg == 0 or np.isnan(score).any():
        return float("nan")
    return float((positive_rank_sum(score, positives) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def positive_rank_sum(score: np.ndarray, positives: np.ndarray) -> float:
    """The sum of the positives' ranks among all scores (1-based, a tie sharing its mean rank).

    What ``rankdata(score)[positives].sum()`` gives, bit for bit (every mean rank is a
    half-integer and each sum stays far below 2**53, so both are exact), without ranking every
    row: per run of tied scores, its mean rank times its positives. A network of hundreds of
    tasks scores each task every epoch, so the per-call cost of a general ranking counts."""
    order = np.argsort(score, kind="stable")
    ordered = score[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    ends = np.append(starts[1:], ordered.size)
    positives_per_run = np.add.reduceat(positives[order].astype(np.int64), starts)
    return float(np.dot((starts + ends + 1) / 2, positives_per_run))


def task_metric(
    output: np.ndarray, target: np.ndarray, task_type: str, scale: float = 1.0
) -> float:
    """The task's metric on labelled rows: ROC-AUC, accuracy, or RMSE in original units."""
    labelled = ~np.isnan(target)
    return labelled_metric(target[labelled], output[labelled], task_type, scale)


def labelled_metric(y: np.ndarray, out: np.ndarray, task_type: str, scale: float = 1.0) -> float:
    """:func:`task_metric` of the labelled rows alone: their targets ``y`` and outputs ``out``
    (rows, output dim)."""
    if not y.size:
        return float("nan")
    if not np.isfinite(out).all():
        return float("nan")
    if task_type == "binary":
        return roc_auc(y, out[:, 0])
    if task_type == "multiclass":
        return float((out.argmax(axis=1) == y).mean())
    return float(np.sqrt(np.mean((out[:, 0] - y) ** 2)) * scale)


def dense_loss_terms(
    output: torch.Tensor, target: torch.Tensor, task_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-pixel loss, labelled-pixel mask), both (batch, H, W), of one dense task.

    ``target``: segmentation (batch, H, W) int64 class ids, -1 = missing (cross-entropy over
    ``output``'s (batch, classes, H, W) logits); dense_regression (batch, H, W) float, NaN =
    missing (L1 against ``output[:, 0]``); normals (batch, 3, H, W) float, a NaN component =
    missing (1 - cosine similarity: the prediction's length is free, its direction is learned).
    """
    if task_type == "segmentation":
        labelled = target >= 0
        per_pixel = F.cross_entropy(output, target.clamp_min(0), reduction="none")
    elif task_type == "dense_regression":
        labelled = ~torch.isnan(target)
        per_pixel = (output[:, 0] - torch.where(labelled, target, 0.0)).abs()
    elif task_type == "normals":
        labelled = ~torch.isnan(target).any(dim=1)
        safe = torch.where(labelled[:, None], target, 0.0)
        per_pixel = 1.0 - F.cosine_similarity(output, safe, dim=1, eps=1e-8)
    else:
        raise ValueError(f"not a dense task type: {task_type!r}")
    # where, not a product: a masked pixel's loss may be anything (a 0-vector's cosine).
    return torch.where(labelled, per_pixel, 0.0), labelled


def dense_loss(output: torch.Tensor, target: torch.Tensor, task_type: str) -> torch.Tensor:
    """Mean loss over the labelled pixels of a batch (every labelled pixel weighs the same,
    whatever its image); 0 with the graph kept when no pixel is labelled."""
    per_pixel, labelled = dense_loss_terms(output, target, task_type)
    count = labelled.sum()
    if count == 0:
        return output.sum() * 0.0
    return per_pixel.sum() / count


class DenseScore:
    """A dense task's loss and metric over one split, accumulated chunk by chunk: sums of the
    loss and of the metric's per-pixel terms (segmentation: a confusion matrix), never the
    outputs themselves. ``scale``: dense_regression's target std (metric in original units)."""

    def __init__(self, task_type: str, n_classes: int = 0, scale: float = 1.0) -> None:
        self.task_type, self.n_classes, self.scale = task_type, int(n_classes), float(scale)
        self.loss_sum = 0.0
        self.metric_sum = 0.0
        self.count = 0
        self.finite = True
        self.confusion: torch.Tensor | None = None

    @torch.no_grad()
    def add(self, output: torch.Tensor, target: torch.Tensor) -> None:
        per_pixel, labelled = dense_loss_terms(output, target, self.task_type)
        self.loss_sum += float(per_pixel.double().sum())
        self.count += int(labelled.sum())
        if not bool(torch.isfinite(output).all()):
            self.finite = False
            return
        if self.task_type == "segmentation":
            k = self.n_classes
            pairs = target[labelled] * k + output.argmax(dim=1)[labelled]
            counts = torch.bincount(pairs, minlength=k * k).reshape(k, k)
            self.confusion = counts if self.confusion is None else self.confusion + counts
        elif self.task_type == "dense_regression":
            self.metric_sum += float(per_pixel.double().sum())  # the L1 loss is the error
        else:
            cosine = F.cosine_similarity(
                output.double(), torch.where(labelled[:, None], target, 0.0).double(), dim=1
            )
            angle = torch.rad2deg(torch.arccos(cosine.clamp(-1.0, 1.0)))
            self.metric_sum += float(torch.where(labelled, angle, 0.0).sum())

    def result(self) -> tuple[float, float]:
        """(mean loss, metric); NaN for a split without labelled pixels."""
        if self.count == 0:
            return float("nan"), float("nan")
        loss = self.loss_sum / self.count
        if not self.finite:
            return loss, float("nan")
        if self.task_type == "segmentation":
            return loss, miou(self.confusion.cpu().numpy())
        if self.task_type == "dense_regression":
            return loss, self.metric_sum / self.count * self.scale
        return loss, self.metric_sum / self.count


def miou(confusion: np.ndarray) -> float:
    """Mean IoU over the classes that occur in the labels or the predictions
    (``confusion[true, predicted]``): a class absent from both has no IoU."""
    confusion = confusion.astype(np.float64)
    hits = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - hits
    present = union > 0
    return float((hits[present] / union[present]).mean()) if present.any() else float("nan")
