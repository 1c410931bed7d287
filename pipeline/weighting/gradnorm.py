"""GradNorm: Chen, Badrinarayanan, Lee and Rabinovich, "GradNorm: Gradient Normalization for
Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018.

Learned task weights ``w_i`` (init 1) scale the losses the network is trained on. At every step,
with ``W`` the last shared layer's weight (the last matrix of ``model.shared_parameters()``):

* ``G_i = || grad_W (w_i L_i) || = w_i || grad_W L_i ||`` and ``G_bar = mean_i G_i``;
* ``Ltilde_i = L_i(t) / L_i(0)`` (loss relative to the first step's) and
  ``r_i = Ltilde_i / mean_j Ltilde_j`` (relative inverse training rate);
* ``L_grad = sum_i | G_i - G_bar * r_i^alpha |`` with the target ``G_bar * r_i^alpha`` held
  constant; ``L_grad`` is differentiated with respect to the ``w_i`` only;
* after the optimiser step the weights are renormalised to sum to the number of tasks.

``alpha`` (``training.gradnorm.alpha``, default 1.5 as in the paper's NYUv2 experiments) sets how
strongly slower-training tasks are pulled up; ``alpha = 0`` asks for equal gradient norms.

The scalar this returns is ``sum_i w_i.detach() L_i + L_grad``: its gradient with respect to the
network is that of the weighted loss, with respect to ``w`` that of ``L_grad`` (``||grad_W L_i||``
is computed without a second-order graph, since the paper's update does not differentiate it).

Recorded per epoch: ``task_weight`` = the weights at the epoch's end and ``grad_norm`` = the
epoch's mean ``G_i`` (gradient norm of the weighted task loss at ``W``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..options import method_defaults
from .base import Weighting

EPS = 1e-12


def last_shared_weight(model: nn.Module) -> nn.Parameter:
    """The last matrix among the model's shared parameters (GradNorm's ``W``)."""
    matrices = [p for p in model.shared_parameters() if p.dim() >= 2]
    if not matrices:
        raise ValueError("gradnorm: the model has no shared weight matrix")
    return matrices[-1]


class GradNorm(Weighting):
    name = "gradnorm"
    why_not_packed = (
        "GradNorm needs each task's gradient norm at each member's own shared layer, per step"
    )

    def __init__(self, n_tasks: int, alpha: float | None = None, **options) -> None:
        super().__init__(n_tasks, **options)
        if alpha is None:  # the default is written once, in the config schema
            alpha = method_defaults("gradnorm")["alpha"]
        self.alpha = float(alpha)
        self.weights = nn.Parameter(torch.ones(n_tasks))
        self.register_buffer("initial_losses", torch.zeros(n_tasks))
        self.register_buffer("has_initial", torch.zeros((), dtype=torch.bool))
        self.register_buffer("norm_sum", torch.zeros(n_tasks, dtype=torch.float64))
        self.register_buffer("norm_steps", torch.zeros((), dtype=torch.long))

    def grad_norms(self, losses: torch.Tensor, model: nn.Module) -> torch.Tensor:
        """``|| grad_W L_i ||`` per task (no graph kept)."""
        shared = last_shared_weight(model)
        norms = []
        for i in range(self.n_tasks):
            (grad,) = torch.autograd.grad(losses[i], shared, retain_graph=True, allow_unused=True)
            norms.append(torch.zeros((), device=losses.device) if grad is None else grad.norm())
        return torch.stack(norms).detach()

    def combine(self, losses: torch.Tensor, model: nn.Module) -> torch.Tensor:
        if not bool(self.has_initial):
            self.initial_losses.copy_(losses.detach())
            self.has_initial.fill_(True)
        norms = self.grad_norms(losses, model)
        weighted_norms = self.weights * norms  # G_i, differentiable in w only
        with torch.no_grad():
            relative = losses.detach() / self.initial_losses.clamp_min(EPS)
            rate = relative / relative.mean().clamp_min(EPS)
            target = weighted_norms.mean() * rate**self.alpha
            self.norm_sum += weighted_norms.double()
            self.norm_steps += 1
        grad_loss = (weighted_norms - target).abs().sum()
        return (self.weights.detach() * losses).sum() + grad_loss

    @torch.no_grad()
    def after_step(self) -> None:
        self.weights.clamp_(min=1e-4)
        self.weights.mul_(self.n_tasks / self.weights.sum())

    def end_epoch(self, epoch: int, train_losses: list[float]) -> None:
        self.norm_sum.zero_()
        self.norm_steps.zero_()

    def task_weights(self) -> list[float]:
        return self.weights.detach().cpu().tolist()

    def recorded(self) -> dict[str, list[float]]:
        steps = max(int(self.norm_steps), 1)
        return {
            "task_weight": self.task_weights(),
            "grad_norm": (self.norm_sum / steps).cpu().tolist(),
        }
