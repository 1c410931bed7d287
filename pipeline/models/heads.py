"""Per-task heads: a task's private layers on top of the shared trunk.

* :class:`MLPHead`: a vector task on a vector trunk output (batch, features).
* :class:`PooledHead`: a vector task on a spatial trunk output (batch, channels, H, W): global
  average pooling, then an MLP head.
* :class:`DenseHead`: a dense task (per-pixel outputs) on a spatial trunk output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import Conv2d, Dense


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


class PooledHead(MLPHead):
    """Global average pooling of (batch, channels, H, W) features, then an MLP head."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return super().forward(h.mean(dim=(2, 3)))


class DenseHead(nn.Module):
    """conv3x3 -> ReLU -> conv1x1 to the task's channels (classes, 1 value, or a 3-vector),
    bilinearly resized to the labels' H x W when the trunk's output has another size.
    ``hidden``: the 3x3 convolution's channels (``model.head_hidden[0]``, else the trunk's)."""

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        out_channels: int,
        generator: torch.Generator,
        label_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.conv = Conv2d(in_channels, hidden, 3, generator)
        self.out = Conv2d(hidden, out_channels, 1, generator)
        self.label_size = tuple(label_size) if label_size else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = self.out(torch.relu(self.conv(h)))
        if self.label_size is not None and tuple(y.shape[-2:]) != self.label_size:
            y = nn.functional.interpolate(
                y, size=self.label_size, mode="bilinear", align_corners=False
            )
        return y


def task_head(
    in_features: int,
    spatial: bool,
    head_hidden: Sequence[int],
    out: int,
    dense: bool,
    generator: torch.Generator,
    label_size: tuple[int, int] | None = None,
) -> nn.Module:
    """The head a task gets on features of ``in_features`` features or channels: a dense head
    for a dense task (spatial features only), a pooled MLP head for a vector task on spatial
    features, an MLP head on vector features."""
    if dense:
        if not spatial:
            raise ValueError("a dense task needs a trunk with spatial output (batch, C, H, W)")
        hidden = int(head_hidden[0]) if head_hidden else in_features
        return DenseHead(in_features, hidden, out, generator, label_size)
    if spatial:
        return PooledHead(in_features, head_hidden, out, generator)
    return MLPHead(in_features, head_hidden, out, generator)
