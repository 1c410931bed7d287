"""A residual form of the MLP trunk, for architectures that skip blocks (AdaShare).

The first trunk layer is the *stem* (input -> ``widths[0]``; never skipped: without it there is
no representation). Every further width is one residual block
``h -> relu(shortcut(h) + Dense(h))``, with ``shortcut`` the identity when the widths match and a
(linear) projection otherwise; a *skipped* block computes ``shortcut(h)`` only, as in ResNet
block-dropping (Veit et al. 2016; Wu et al., BlockDrop, CVPR 2018). ``model.hidden: [128, 128]``
thus gives one skippable block; list more widths for more.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from .layers import BinaryInput, Dense


class ResidualBlock(nn.Module):
    def __init__(self, in_features: int, out_features: int, generator: torch.Generator) -> None:
        super().__init__()
        self.layer = Dense(in_features, out_features, generator)
        self.shortcut = (
            Dense(in_features, out_features, generator) if in_features != out_features else None
        )

    def skip(self, h: torch.Tensor) -> torch.Tensor:
        return h if self.shortcut is None else self.shortcut(h)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.skip(h) + self.layer(h))

    def skip_macs(self) -> int:
        return 0 if self.shortcut is None else self.shortcut.macs()

    def macs(self) -> int:
        return self.layer.macs() + self.skip_macs()


class ResidualTrunk(nn.Module):
    """Stem + residual blocks; executes every block (``AdaShare`` applies per-task policies)."""

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
        self.stem = first(in_features, widths[0], generator)
        self.blocks = nn.ModuleList(ResidualBlock(a, b, generator) for a, b in pairwise(widths))
        self.input_shape = (int(in_features),)
        self.out_features = int(widths[-1])
        self.spatial = False

    def forward(self, x) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        for block in self.blocks:
            h = block(h)
        return h

    def stages(self) -> nn.ModuleList:
        return nn.ModuleList([self.stem, *self.blocks])

    def macs(self) -> int:
        return self.stem.macs() + sum(block.macs() for block in self.blocks)
