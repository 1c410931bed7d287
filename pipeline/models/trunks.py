"""Shared trunks: feature extractors all of a network's tasks share.

A trunk is an ``nn.Module`` with ``out_features`` and ``macs()``. The MLP trunk serves tables;
an image dataset registers a conv trunk here (same interface) and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .conv import ConvTrunk
from .layers import BinaryInput, Dense


class MLPTrunk(nn.Module):
    def __init__(
        self,
        in_features: int,
        widths: Sequence[int],
        generator: torch.Generator,
        binary_input: bool = False,
    ) -> None:
        super().__init__()
        if not widths:
            raise ValueError("model.hidden: the trunk needs at least one layer")
        first = BinaryInput if binary_input else Dense
        layers: list[nn.Module] = [first(in_features, widths[0], generator)]
        for a, b in zip(widths[:-1], widths[1:]):
            layers.append(Dense(a, b, generator))
        self.layers = nn.ModuleList(layers)
        self.out_features = int(widths[-1])
        self.spatial = False

    def forward(self, x) -> torch.Tensor:
        for layer in self.layers:
            x = torch.relu(layer(x))
        return x

    def stages(self) -> nn.ModuleList:
        """The trunk's blocks, in order (attention or skip policies attach per stage)."""
        return self.layers

    def macs(self) -> int:
        return sum(layer.macs() for layer in self.layers)


# model.trunk -> class. MLP: (in_features, widths, generator, binary_input=); conv:
# (in_channels, widths, generator, input_size=(H, W)) (pipeline.models.build_trunk).
TRUNKS: dict[str, Callable[..., nn.Module]] = {"mlp": MLPTrunk, "conv": ConvTrunk}
