"""Hard parameter sharing (Caruana 1997): one trunk shared by all tasks, one head per task.

The architecture of Standley et al. (ICML 2020) and the default of every taskgroup network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import Architecture
from .heads import MLPHead
from .trunks import TRUNKS

STACKED_HEADS_FROM = 16


class HardSharing(Architecture):
    name = "hard_sharing"

    def __init__(
        self,
        in_features: int,
        widths: Sequence[int],
        head_hidden: Sequence[int],
        output_dims: Sequence[int],
        generator: torch.Generator,
        binary_input: bool = False,
        trunk: str = "mlp",
    ) -> None:
        super().__init__(in_features, widths, head_hidden, output_dims, generator, binary_input)
        self.trunk = TRUNKS[trunk](in_features, widths, generator, binary_input=binary_input)
        self.heads = nn.ModuleList(
            MLPHead(self.trunk.out_features, head_hidden, d, generator) for d in output_dims
        )
        # One matmul for all single-layer heads instead of one per task: with hundreds of
        # tasks, per-head matmuls (and their backward) dominate a step's time (4x at 617).
        # Below STACKED_HEADS_FROM heads the per-head matmuls stay: their rounding is what a
        # packed training (pipeline/packing.py) reproduces bit for bit.
        self._stacked_heads = len(self.heads) >= STACKED_HEADS_FROM and all(
            len(head.layers) == 1 for head in self.heads
        )
        self._head_widths = [int(d) for d in output_dims]

    def forward(self, x) -> list[torch.Tensor]:
        h = self.trunk(x)
        if self._stacked_heads:
            layers = [head.layers[0] for head in self.heads]
            weight = torch.cat([layer.weight for layer in layers])
            bias = torch.cat([layer.bias for layer in layers])
            return list(nn.functional.linear(h, weight, bias).split(self._head_widths, dim=1))
        return [head(h) for head in self.heads]

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())

    def macs(self) -> int:
        return self.trunk.macs() + sum(head.macs() for head in self.heads)
