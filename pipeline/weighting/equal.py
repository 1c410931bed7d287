"""Equal weighting: the plain sum of task losses (Standley et al., ICML 2020; Caruana 1997)."""

from __future__ import annotations

import torch
from torch import nn

from .base import Weighting


class Equal(Weighting):
    name = "equal"
    packable = True

    def combine(self, losses: torch.Tensor, model: nn.Module) -> torch.Tensor:
        return losses.sum()
