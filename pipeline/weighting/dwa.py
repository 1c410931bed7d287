"""Dynamic Weight Averaging (DWA): Liu, Johns and Davison, "End-to-End Multi-Task Learning with
Attention", CVPR 2019 (eq. 7).

``w_k(t) = K * exp(r_k(t-1) / T) / sum_i exp(r_i(t-1) / T)`` with
``r_k(t-1) = L_k(t-1) / L_k(t-2)``, where ``L_k(e)`` is task k's mean training loss over epoch
e, ``K`` the number of tasks and ``T`` the temperature (``training.dwa.temperature``, default 2,
as in the paper). Weights are 1 for the first two epochs (no loss history yet). A task whose loss
falls more slowly gets more weight. The loss history lives in buffers, so resume is exact.

Recorded per epoch: ``task_weight`` = the weights used during that epoch.
"""

from __future__ import annotations

import torch
from torch import nn

from ..options import method_defaults
from .base import Weighting

EPS = 1e-12


def dwa_weights(previous: list[float], before: list[float], temperature: float) -> list[float]:
    """DWA's weights from the last two epochs' per-task losses (``previous`` = epoch t-1)."""
    ratio = torch.tensor(previous, dtype=torch.float64) / torch.tensor(
        before, dtype=torch.float64
    ).clamp_min(EPS)
    return (len(previous) * torch.softmax(ratio / temperature, dim=0)).tolist()


class DWA(Weighting):
    name = "dwa"
    packable = True

    def __init__(self, n_tasks: int, temperature: float | None = None, **options) -> None:
        super().__init__(n_tasks, **options)
        if temperature is None:  # the default is written once, in the config schema
            temperature = method_defaults("dwa")["temperature"]
        if temperature <= 0:
            raise ValueError("training.dwa.temperature must be > 0")
        self.temperature = float(temperature)
        self.register_buffer("weights", torch.ones(n_tasks))
        # history[0] = loss of epoch t-1, history[1] = of epoch t-2; `epochs_seen` counts them.
        self.register_buffer("history", torch.zeros(2, n_tasks, dtype=torch.float64))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))

    def combine(self, losses: torch.Tensor, model: nn.Module) -> torch.Tensor:
        return (self.weights.to(losses.dtype) * losses).sum()

    def end_epoch(self, epoch: int, train_losses: list[float]) -> None:
        self.history[1] = self.history[0].clone()
        self.history[0] = torch.tensor(train_losses, dtype=torch.float64)
        self.epochs_seen += 1
        if int(self.epochs_seen) >= 2:
            new = dwa_weights(self.history[0].tolist(), self.history[1].tolist(), self.temperature)
            self.weights.copy_(torch.tensor(new))

    def task_weights(self) -> list[float]:
        return self.weights.cpu().tolist()
