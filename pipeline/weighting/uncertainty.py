"""Uncertainty weighting: Kendall, Gal and Cipolla, "Multi-Task Learning Using Uncertainty to
Weigh Losses for Scene Geometry and Semantics", CVPR 2018.

Each task t has a learned log-variance ``s_t = log sigma_t^2`` (initialised at 0) and the
combined loss is ``sum_t exp(-s_t) * L_t + s_t``. This is twice Kendall et al.'s Gaussian
regression objective ``1/(2 sigma^2) L + log sigma`` (the form used for classification in their
approximation differs only by that constant factor on the first term, which Adam is invariant to
up to the regulariser's balance), as in the authors' follow-up code and most re-implementations.
At the optimum ``exp(s_t) = L_t``: a noisier task (larger irreducible loss) gets a larger
variance and so a smaller weight ``exp(-s_t)``.

Recorded per epoch: ``task_weight`` = ``exp(-s_t)`` and ``log_variance`` = ``s_t``.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Weighting


class Uncertainty(Weighting):
    name = "uncertainty"
    packable = True

    def __init__(self, n_tasks: int, **options) -> None:
        super().__init__(n_tasks, **options)
        self.log_variance = nn.Parameter(torch.zeros(n_tasks))

    def combine(self, losses: torch.Tensor, model: nn.Module) -> torch.Tensor:
        return (torch.exp(-self.log_variance) * losses + self.log_variance).sum()

    def task_weights(self) -> list[float]:
        return torch.exp(-self.log_variance.detach()).cpu().tolist()

    def recorded(self) -> dict[str, list[float]]:
        return {
            "task_weight": self.task_weights(),
            "log_variance": self.log_variance.detach().cpu().tolist(),
        }
