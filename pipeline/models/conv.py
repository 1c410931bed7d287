"""A small convolutional encoder-decoder trunk for dense (per-pixel) tasks on CPU sweeps.

A U-Net in miniature (Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for
Biomedical Image Segmentation", MICCAI 2015): with ``widths = (w_0, ..., w_{k-1})``

* encoder stage 0: conv3x3(C -> w_0), stride 1, at full resolution;
* encoder stage j >= 1: conv3x3(w_{j-1} -> w_j), stride 2 (resolution halves);
* decoder stage for j = k-1 .. 1: nearest upsampling to stage j-1's resolution, concatenation
  with stage j-1's features (the skip connection), conv3x3(w_j + w_{j-1} -> w_{j-1});

each conv followed by a ReLU. The output has ``w_0`` channels at the input resolution, so
per-pixel heads (1x1 convolutions) sit directly on it. No normalisation layers: batch
statistics would make a sample's output depend on its batch, and running-statistic buffers do
not go through ``torch.func.vmap`` the way parameters do.

Cost (``macs``) is measured, not derived: ``torch.utils.flop_counter.FlopCounterMode`` counts
the FLOPs of one forward pass on a zero input of the configured shape, and MACs = FLOPs / 2.
So a change of architecture cannot leave a stale cost formula behind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .layers import Conv2d, flop_macs

# Full-size widths: 56 M multiply-adds per 64x64 RGB image. Halving the cost (the "half" size of
# pipeline.models.widths_for_size) gives (11, 22, 22), 0.48 of it.
DEFAULT_WIDTHS = (16, 32, 32)


def Conv(  # noqa: N802 - a layer constructor, named like one
    in_channels: int, out_channels: int, generator: torch.Generator, stride: int = 1
) -> Conv2d:
    """3x3 convolution (padding 1) initialised from an explicit generator, like ``Dense``:
    He/Kaiming-uniform weights for ReLU (bound sqrt(6 / fan_in); no normalisation layer keeps
    the activations' scale, so the init must) and ``nn.Conv2d``'s default bias scale."""
    bound = math.sqrt(6.0 / (in_channels * 9))
    return Conv2d(in_channels, out_channels, 3, generator, stride=stride, weight_bound=bound)


class EncoderBlock(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, generator: torch.Generator, stride: int
    ) -> None:
        super().__init__()
        self.conv = Conv(in_channels, out_channels, generator, stride=stride)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


class DecoderBlock(nn.Module):
    def __init__(
        self, in_channels: int, skip_channels: int, out_channels: int, generator: torch.Generator
    ) -> None:
        super().__init__()
        self.conv = Conv(in_channels + skip_channels, out_channels, generator)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # To the skip's size, not a fixed x2: odd sizes round up in the strided encoder.
        up = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
        return torch.relu(self.conv(torch.cat([up, skip], dim=1)))


class ConvTrunk(nn.Module):
    """Features (B, widths[0], H, W) of images (B, in_channels, H, W).

    ``input_size`` (H, W) is the image size ``macs()`` is counted at; ``forward`` accepts any
    size. ``stages()`` lists the encoder blocks then the decoder blocks, in execution order;
    ``forward_stages`` returns each one's output in the same order.
    """

    def __init__(
        self,
        in_channels: int,
        widths: Sequence[int],
        generator: torch.Generator,
        input_size: tuple[int, int] = (64, 64),
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1:
            raise ValueError(f"model.hidden: the conv trunk needs positive widths, got {widths}")
        self.in_channels = int(in_channels)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.input_shape = (self.in_channels, *self.input_size)
        self.widths = tuple(widths)
        self.encoder = nn.ModuleList(
            EncoderBlock(
                self.in_channels if j == 0 else widths[j - 1], w, generator, 1 if j == 0 else 2
            )
            for j, w in enumerate(widths)
        )
        # Decoder j goes from stage j's resolution up to stage j-1's, deepest first.
        self.decoder = nn.ModuleList(
            DecoderBlock(widths[j], widths[j - 1], widths[j - 1], generator)
            for j in range(len(widths) - 1, 0, -1)
        )
        self.out_channels = widths[0]
        self.out_features = self.out_channels
        self.spatial = True  # (batch, channels, H, W): dense heads sit on it
        self._macs: int | None = None

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips, outputs = [], []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            outputs.append(x)
        for block, skip in zip(self.decoder, reversed(skips[:-1])):
            x = block(x, skip)
            outputs.append(x)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)[-1]

    def stages(self) -> nn.ModuleList:
        """The trunk's blocks, in order (attention or skip policies attach per stage)."""
        return nn.ModuleList([*self.encoder, *self.decoder])

    def macs(self) -> int:
        """Inference multiply-adds for one image of ``input_size`` (FLOPs / 2, counted)."""
        if self._macs is None:
            self._macs = flop_macs(self, (self.in_channels, *self.input_size))
        return self._macs
