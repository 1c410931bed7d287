"""MTAN-style soft attention: Liu, Johns and Davison, "End-to-End Multi-Task Learning with
Attention", CVPR 2019 (the Multi-Task Attention Network).

A shared trunk computes features ``h_j`` at every stage j (the MLP trunk's layers). Each task t
has its own attention module per stage that *selects* trunk features with a soft mask:

* stage 1: ``a_t^1 = sigmoid(g_t^1(h_1)) * h_1``;
* stage j > 1: ``a_t^j = sigmoid(g_t^j([h_j ; f_j(a_t^{j-1})])) * h_j``, where ``f_j`` is a
  linear map from the previous stage's width shared by all tasks (the paper's shared block
  ``f``) and ``[;]`` concatenation;
* ``g_t^j`` is the paper's two-layer mask (1x1 convolutions there, dense layers here):
  ``Dense -> ReLU -> Dense`` with a bottleneck of a quarter of the stage width (at least 1);
* task t's head reads ``a_t`` of the last stage.

Adapted to an MLP trunk: a stage is one dense layer, and both the mask input and the masked
features are that layer's (post-ReLU) output, where the paper uses two points inside a conv block.

Cost: ``macs()`` counts the trunk once, each task's attention modules and its application of the
shared ``f_j`` (computed on that task's own features), and the heads; the element-wise mask
products are not counted (like ReLUs). The cost model's reference is the full-size single-task
MTAN, so "half" is the width at which a one-task MTAN costs half of a full one.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from .base import Architecture
from .heads import MLPHead
from .layers import Dense
from .trunks import MLPTrunk


class AttentionMask(nn.Module):
    def __init__(self, in_features: int, out_features: int, generator: torch.Generator) -> None:
        super().__init__()
        bottleneck = max(1, out_features // 4)
        self.down = Dense(in_features, bottleneck, generator)
        self.up = Dense(bottleneck, out_features, generator)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.up(torch.relu(self.down(h))))

    def macs(self) -> int:
        return self.down.macs() + self.up.macs()


class MTAN(Architecture):
    name = "mtan"

    def __init__(
        self,
        in_features: int,
        widths: Sequence[int],
        head_hidden: Sequence[int],
        output_dims: Sequence[int],
        generator: torch.Generator,
        binary_input: bool = False,
    ) -> None:
        super().__init__(in_features, widths, head_hidden, output_dims, generator, binary_input)
        widths = [int(w) for w in widths]
        self.trunk = MLPTrunk(in_features, widths, generator, binary_input=binary_input)
        self.bridges = nn.ModuleList(Dense(a, b, generator) for a, b in pairwise(widths))
        self.attention = nn.ModuleList(
            nn.ModuleList(
                AttentionMask(w if j == 0 else 2 * w, w, generator) for j, w in enumerate(widths)
            )
            for _ in output_dims
        )
        self.heads = nn.ModuleList(
            MLPHead(widths[-1], head_hidden, d, generator) for d in output_dims
        )

    def forward(self, x) -> list[torch.Tensor]:
        features = []
        h = x
        for layer in self.trunk.stages():
            h = torch.relu(layer(h))
            features.append(h)
        outputs = []
        for masks, head in zip(self.attention, self.heads):
            attended = masks[0](features[0]) * features[0]
            for j in range(1, len(features)):
                joined = torch.cat([features[j], self.bridges[j - 1](attended)], dim=1)
                attended = masks[j](joined) * features[j]
            outputs.append(head(attended))
        return outputs

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())

    def macs(self) -> int:
        per_task = sum(b.macs() for b in self.bridges)
        return (
            self.trunk.macs()
            + sum(sum(m.macs() for m in masks) + per_task for masks in self.attention)
            + sum(head.macs() for head in self.heads)
        )
