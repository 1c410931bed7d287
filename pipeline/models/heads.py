"""Per-task heads: a task's private layers on top of the shared trunk."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import Dense


class MLPHead(nn.Module):
    def __init__(
        self, in_features: int, hidden: Sequence[int], out_features: int, generator: torch.Generator
    ) -> None:
        super().__init__()
        widths = [in_features, *hidden, out_features]
        self.layers = nn.ModuleList(Dense(a, b, generator) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            h = torch.relu(layer(h))
        return self.layers[-1](h)

    def macs(self) -> int:
        return sum(layer.macs() for layer in self.layers)
