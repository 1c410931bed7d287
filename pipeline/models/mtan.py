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

Over a staged spatial trunk (:class:`StagedMTAN`: the conv trunk, or a user's trunk whose module
has ``forward_stages``) the network is the paper's own setting, an encoder-decoder whose every
stage output ``h_j`` (B, c_j, H_j, W_j) is attended per task:

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
single-task ``StagedMTAN`` (one dense task when the dataset has dense tasks).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn
from torch.nn import functional as F

from .base import Architecture
from .conv import Conv
from .heads import MLPHead, task_head
from .layers import Conv2d, Dense, flop_macs
from .trunks import MLPTrunk
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


class MTAN(Architecture):
    name = "mtan"
    why_not_packed = "MTAN's per-task attention modules have no stacked form in pipeline.packing"

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


class ConvAttentionMask(nn.Module):
    """The paper's attention layer without BatchNorm: conv1x1 -> ReLU -> conv1x1 -> sigmoid."""

    def __init__(self, in_channels: int, channels: int, generator: torch.Generator) -> None:
        super().__init__()
        self.down = Conv2d(in_channels, channels, 1, generator)
        self.up = Conv2d(channels, channels, 1, generator)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.up(torch.relu(self.down(h))))


class StagedMTAN(Architecture):
    """MTAN over a spatial trunk's stages (module docstring). Built by ``build_model`` with the
    trunk already made (``trunk_module``); its stages' shapes are read from one forward of
    ``trunk_module.forward_stages`` on zeros of ``input_shape``."""

    name = "mtan"

    def __init__(
        self,
        in_features: int,
        widths: Sequence[int],
        head_hidden: Sequence[int],
        output_dims: Sequence[int],
        generator: torch.Generator,
        binary_input: bool = False,
        trunk_module: nn.Module | None = None,
        dense: Sequence[bool] | None = None,
        label_size: tuple[int, int] | None = None,
        input_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__(in_features, widths, head_hidden, output_dims, generator, binary_input)
        if trunk_module is None or input_shape is None:
            raise ValueError("StagedMTAN needs the trunk module and the input shape")
        self.trunk = trunk_module
        self.input_shape = tuple(int(d) for d in input_shape)
        channels = [shape[0] for shape in stage_shapes(trunk_module, self.input_shape)]
        self.bridges = nn.ModuleList(Conv(a, b, generator) for a, b in pairwise(channels))
        self.attention = nn.ModuleList(
            nn.ModuleList(
                ConvAttentionMask(c if j == 0 else 2 * c, c, generator)
                for j, c in enumerate(channels)
            )
            for _ in output_dims
        )
        dense = dense or [False] * len(output_dims)
        self.heads = nn.ModuleList(
            task_head(channels[-1], True, head_hidden, d, is_dense, generator, label_size)
            for d, is_dense in zip(output_dims, dense)
        )

    def _bridge(self, j: int, attended: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``f_j(a^{j-1})`` at stage j's resolution: convolve at the finer of the two."""
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
        return flop_macs(self, self.input_shape)


def stage_shapes(trunk: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Per-sample shapes (C, H, W) of ``trunk.forward_stages`` on zeros of ``input_shape``;
    TrunkError naming the trunk if it has no stages or they are not spatial."""
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
            stages = trunk.forward_stages(torch.zeros(1, *input_shape, device=device))
    except Exception as err:
        raise TrunkError(
            f"model.trunk {name}: forward_stages on one sample failed: {type(err).__name__}: {err}"
        ) from None
    finally:
        trunk.train(was_training)
    shapes = [tuple(s.shape[1:]) for s in stages if isinstance(s, torch.Tensor)]
    if not shapes or len(shapes) != len(stages) or any(len(s) != 3 for s in shapes):
        raise TrunkError(
            f"model.trunk {name}: architecture mtan needs forward_stages to return a non-empty "
            "list of tensors (batch, C, H, W)"
        )
    return [tuple(int(d) for d in s) for s in shapes]
