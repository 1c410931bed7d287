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

One class serves every trunk with stages (``forward_stages``: the MLP's layers, the conv
trunk's blocks, a user's module that defines it). Over a spatial trunk the network is the
paper's own setting, an encoder-decoder whose every stage output ``h_j`` (B, c_j, H_j, W_j)
is attended per task:

* ``g_t^j`` is the paper's attention layer, 1x1 conv (in -> c_j) -> ReLU -> 1x1 conv
  (c_j -> c_j) -> sigmoid, with the authors' intermediate width c_j (their ``att_layer``); the
  paper's BatchNorms are left out, as in the conv trunk (no batch statistics: a sample's output
  does not depend on its batch, and TAG's vmapped lookahead sees parameters only);
* ``f_j`` is a shared 3x3 conv (c_{j-1} -> c_j) + ReLU, and ``a_t^{j-1}`` is resized to stage j's
  resolution around it as the authors do: going down (encoder), ``f_j`` then max pooling;
  going up (decoder), bilinear upsampling then ``f_j``;
* mask input and masked features are both the stage's output (the trunk's stages are single
  convolutions, where the paper's blocks have an inner point);
* each task's head (a dense head, or pooling then an MLP for a vector task) reads its own
  ``a_t`` of the last stage, at the trunk output's resolution and channels.

Its cost is counted by ``torch.utils.flop_counter`` on one sample (convolutions and matmuls;
element-wise products, pooling and resizing are not counted), relative to the full-size
single-task MTAN (one dense task when the dataset has dense tasks).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn
from torch.nn import functional as F

from .base import Architecture, formula_cost
from .conv import Conv
from .heads import task_head
from .layers import Conv2d, Dense, flop_macs
from .user import TrunkError


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


class ConvAttentionMask(nn.Module):
    """The paper's attention layer without BatchNorm: conv1x1 -> ReLU -> conv1x1 -> sigmoid."""

    def __init__(self, in_channels: int, channels: int, generator: torch.Generator) -> None:
        super().__init__()
        self.down = Conv2d(in_channels, channels, 1, generator)
        self.up = Conv2d(channels, channels, 1, generator)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.up(torch.relu(self.down(h))))


class MTAN(Architecture):
    """MTAN over any trunk's stages (``forward_stages``; module docstring): dense masks and
    bridges over vector stages (the MLP's layers), convolutional ones over spatial stages (the
    conv trunk, a user's). The stages' shapes come from the trunk (``stage_shapes``) or one
    ``forward_stages`` on zeros of its ``input_shape``."""

    why_not_packed = "MTAN's per-task attention modules have no stacked form in pipeline.packing"

    name = "mtan"

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
        shapes = stage_shapes(trunk)
        self.spatial = len(shapes[0]) == 3
        self.input_shape = None if formula_cost(trunk) else tuple(trunk.input_shape)
        channels = [shape[0] for shape in shapes]
        if self.spatial:
            self.bridges = nn.ModuleList(Conv(a, b, generator) for a, b in pairwise(channels))
            mask = ConvAttentionMask
        else:
            self.bridges = nn.ModuleList(Dense(a, b, generator) for a, b in pairwise(channels))
            mask = AttentionMask
        self.attention = nn.ModuleList(
            nn.ModuleList(
                mask(c if j == 0 else 2 * c, c, generator) for j, c in enumerate(channels)
            )
            for _ in output_dims
        )
        dense = dense or [False] * len(output_dims)
        self.heads = nn.ModuleList(
            task_head(channels[-1], self.spatial, head_hidden, d, is_dense, generator, label_size)
            for d, is_dense in zip(output_dims, dense)
        )

    def _bridge(self, j: int, attended: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``f_j(a^{j-1})`` at stage j's shape; spatial: convolve at the finer resolution."""
        if not self.spatial:
            return self.bridges[j - 1](attended)
        size = tuple(target.shape[-2:])
        here = tuple(attended.shape[-2:])
        if size == here:
            return torch.relu(self.bridges[j - 1](attended))
        if size[0] * size[1] < here[0] * here[1]:  # encoder: f, then pool
            return F.adaptive_max_pool2d(torch.relu(self.bridges[j - 1](attended)), size)
        up = F.interpolate(attended, size=size, mode="bilinear", align_corners=False)
        return torch.relu(self.bridges[j - 1](up))  # decoder: upsample, then f

    def forward(self, x) -> list[torch.Tensor]:
        features = self.trunk.forward_stages(x)
        outputs = []
        for masks, head in zip(self.attention, self.heads):
            attended = masks[0](features[0]) * features[0]
            for j in range(1, len(features)):
                bridged = self._bridge(j, attended, features[j])
                attended = masks[j](torch.cat([features[j], bridged], dim=1)) * features[j]
            outputs.append(head(attended))
        return outputs

    def masks(self, x) -> list[list[torch.Tensor]]:
        """Each task's attention masks, stage by stage (for inspection and tests)."""
        features = self.trunk.forward_stages(x)
        result = []
        for masks in self.attention:
            mask = masks[0](features[0])
            attended, task_masks = mask * features[0], [mask]
            for j in range(1, len(features)):
                bridged = self._bridge(j, attended, features[j])
                mask = masks[j](torch.cat([features[j], bridged], dim=1))
                attended = mask * features[j]
                task_masks.append(mask)
            result.append(task_masks)
        return result

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())

    def macs(self) -> int:
        if self.input_shape is not None:
            return flop_macs(self, self.input_shape)
        # Each task applies the shared bridges to its own features: counted once per task.
        per_task = sum(b.macs() for b in self.bridges)
        return (
            self.trunk.macs()
            + sum(sum(m.macs() for m in masks) + per_task for masks in self.attention)
            + sum(head.macs() for head in self.heads)
        )


def stage_shapes(trunk: nn.Module) -> list[tuple[int, ...]]:
    """Per-sample shapes of ``trunk.forward_stages``: the trunk's own ``stage_shapes()``, else
    one forward on zeros of ``trunk.input_shape``; TrunkError naming the trunk if it has no
    stages or they are neither all (C, H, W) nor all (features,)."""
    if callable(getattr(trunk, "stage_shapes", None)):
        return trunk.stage_shapes()
    name = repr(getattr(trunk, "name", "conv"))
    if not getattr(trunk, "staged", True) or not callable(getattr(trunk, "forward_stages", None)):
        raise TrunkError(
            f"model.trunk {name}: architecture mtan attends the trunk's stages, but the module "
            "has no forward_stages(x) returning each stage's output (batch, C, H, W); add it "
            "or use architecture hard_sharing"
        )
    parameter = next(trunk.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = trunk.training
    trunk.eval()
    try:
        with torch.no_grad():
            stages = trunk.forward_stages(torch.zeros(1, *trunk.input_shape, device=device))
    except Exception as err:
        raise TrunkError(
            f"model.trunk {name}: forward_stages on one sample failed: {type(err).__name__}: {err}"
        ) from None
    finally:
        trunk.train(was_training)
    shapes = [tuple(s.shape[1:]) for s in stages if isinstance(s, torch.Tensor)]
    ranks = {len(s) for s in shapes}
    if not shapes or len(shapes) != len(stages) or len(ranks) != 1 or ranks - {1, 3}:
        raise TrunkError(
            f"model.trunk {name}: architecture mtan needs forward_stages to return a non-empty "
            "list of tensors, all (batch, C, H, W) or all (batch, features)"
        )
    return [tuple(int(d) for d in s) for s in shapes]
