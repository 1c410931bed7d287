"""The interface every loss-weighting method implements."""

from __future__ import annotations

import torch
from torch import nn


class Weighting(nn.Module):
    """Turns per-task losses into the one scalar that is back-propagated.

    Subclasses may own learned parameters (they are optimised with the network's) and may adapt
    at epoch ends; ``task_weights`` is what gets recorded per epoch.
    """

    name = "base"

    def __init__(self, n_tasks: int) -> None:
        super().__init__()
        self.n_tasks = n_tasks

    def combine(self, losses: torch.Tensor, model: nn.Module) -> torch.Tensor:
        raise NotImplementedError

    def end_epoch(self, epoch: int, train_losses: list[float]) -> None:
        """Called with each task's mean training loss of the finished epoch."""

    def task_weights(self) -> list[float]:
        return [1.0] * self.n_tasks
