"""Hard parameter sharing (Caruana 1997): one trunk shared by all tasks, one head per task.

The architecture of Standley et al. (ICML 2020) and the default of every taskgroup network.
Over any trunk (the MLP, the conv trunk, a user's), with a head per task that suits the trunk's
output and the task: an MLP head on vector features, a pooled MLP head for a vector task on
spatial features, a conv decoder head for a dense task. Over a trunk other than the MLP, the
cost is counted by torch's FLOP counter on one sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import Architecture, formula_cost
from .heads import MLPHead, task_head
from .layers import flop_macs

STACKED_HEADS_FROM = 16


class HardSharing(Architecture):
    name = "hard_sharing"
    packable = True

    def __init__(
        self,
        trunk: nn.Module,
        output_dims: Sequence[int],
        generator: torch.Generator,
        head_hidden: Sequence[int] = (),
        dense: Sequence[bool] | None = None,
        label_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(trunk, output_dims, generator, head_hidden, dense, label_size)
        self.trunk = trunk
        self.heads = nn.ModuleList(
            _head(self.trunk, head_hidden, d, is_dense, generator, label_size)
            for d, is_dense in zip(output_dims, dense or [False] * len(output_dims))
        )
        # Cost by formula (the layers' macs) over the MLP, else counted on one sample.
        self.input_shape = None if formula_cost(trunk) else tuple(trunk.input_shape)
        # One matmul for all single-layer heads instead of one per task: with hundreds of
        # tasks, per-head matmuls (and their backward) dominate a step's time (4x at 617).
        # Below STACKED_HEADS_FROM heads the per-head matmuls stay: their rounding is what a
        # packed training (pipeline/packing.py) reproduces bit for bit.
        self._stacked_heads = len(self.heads) >= STACKED_HEADS_FROM and all(
            type(head) is MLPHead and len(head.layers) == 1 for head in self.heads
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
        if self.input_shape is not None:
            return flop_macs(self, self.input_shape)
        return self.trunk.macs() + sum(head.macs() for head in self.heads)


def _head(
    trunk: nn.Module,
    head_hidden: Sequence[int],
    out: int,
    dense: bool,
    generator: torch.Generator,
    label_size: tuple[int, int] | None,
) -> nn.Module:
    spatial = bool(getattr(trunk, "spatial", False))
    return task_head(trunk.out_features, spatial, head_hidden, out, dense, generator, label_size)
