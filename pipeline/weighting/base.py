"""The interface every loss-weighting method implements."""

from __future__ import annotations

import torch
from torch import nn


class Weighting(nn.Module):
    """Turns per-task losses into the one scalar that is back-propagated.

    Subclasses may own learned parameters (they are optimised with the network's) and may adapt
    at epoch ends. Any state a method keeps must live in its ``state_dict`` (parameters or
    buffers) so a checkpointed training resumes exactly.

    Per step, ``train_network`` calls ``combine`` then (after the optimiser step) ``after_step``;
    per epoch, ``recorded`` (the values to record for the finished epoch, before adapting) then
    ``end_epoch``.
    """

    name = "base"
    # Can networks with this weighting train as one pack (pipeline.packing)? Packs combine each
    # member's losses with its own weighting, which must need nothing but its losses. If not,
    # why (each such network's log says it).
    packable = False
    why_not_packed = "this weighting has no packed form"

    def __init__(self, n_tasks: int, **options) -> None:
        super().__init__()
        self.n_tasks = n_tasks
        if options:
            raise ValueError(f"training.{self.name}: unknown option(s) {sorted(options)}")

    def combine(self, losses: torch.Tensor, model: nn.Module) -> torch.Tensor:
        raise NotImplementedError

    def after_step(self) -> None:
        """Called after each optimiser step (e.g. to renormalise learned weights)."""

    def end_epoch(self, epoch: int, train_losses: list[float]) -> None:
        """Called with each task's mean training loss of the finished epoch."""

    def task_weights(self) -> list[float]:
        """The multiplier of each task's loss in force during the epoch just finished."""
        return [1.0] * self.n_tasks

    def recorded(self) -> dict[str, list[float]]:
        """Per-task values recorded each epoch as METRICS rows (split 'train', metric = key)."""
        return {"task_weight": [float(w) for w in self.task_weights()]}
