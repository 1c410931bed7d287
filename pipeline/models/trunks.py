"""Shared trunks: feature extractors all of a network's tasks share, and the one place a
network's shape (:class:`ModelShape`) is made from the data and the config.

A trunk is an ``nn.Module`` with ``input_shape`` (one sample's), ``out_features`` (features or
channels), ``spatial`` (output (batch, C, H, W) rather than (batch, features)) and ``macs()``;
MTAN also reads ``forward_stages(x)``. ``model.trunk`` names one: ``mlp`` (tables), ``conv``
(images) or a user's ``"module:factory"`` (:mod:`.user`). Architectures take the built trunk
(pipeline/models/base.py), so a new trunk needs no change to any architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .conv import ConvTrunk
from .layers import BinaryInput, Dense
from .user import TrunkError, UserTrunk, is_user_trunk


@dataclass(frozen=True)
class ModelShape:
    in_features: int
    hidden: tuple[int, ...]
    head_hidden: tuple[int, ...]
    binary_input: bool = False
    # One sample's input shape: (features,) or (channels, H, W); () means (in_features,).
    input_shape: tuple[int, ...] = ()
    # model.trunk: mlp (the built-in MLP), conv (the built-in conv trunk) or "module:factory".
    trunk: str = "mlp"
    # H x W of the dense tasks' labels (dense heads resize to it); None without dense tasks.
    label_size: tuple[int, int] | None = None
    # The cost reference's one task is dense (a dataset with dense tasks) or a vector task.
    reference_dense: bool = False

    @classmethod
    def of(cls, data, model: dict) -> ModelShape:
        """The shape of every network of ``data`` (a Dataset) under the config's (or a spec's)
        ``model`` section: validation and training build it here, so they build one network."""
        return cls(
            in_features=int(data.features.shape[1]),
            hidden=tuple(model["hidden"]),
            head_hidden=tuple(model["head_hidden"]),
            binary_input=bool(data.binary_features),
            input_shape=tuple(int(d) for d in data.features.shape[1:]),
            # Absent from the specs of MLP networks (they predate it): mlp.
            trunk=model.get("trunk", "mlp"),
            label_size=data.label_size,
            reference_dense=bool(data.dense_targets),
        )

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.input_shape or (self.in_features,)


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
        self.input_shape = (int(in_features),)
        self.out_features = int(widths[-1])
        self.spatial = False

    def forward(self, x) -> torch.Tensor:
        for layer in self.layers:
            x = torch.relu(layer(x))
        return x

    def forward_stages(self, x) -> list[torch.Tensor]:
        """Each layer's (post-ReLU) output, in order (MTAN attends them)."""
        outputs = []
        for layer in self.layers:
            x = torch.relu(layer(x))
            outputs.append(x)
        return outputs

    def stage_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample shapes of ``forward_stages`` (known without a forward: the first layer
        may take a sparse batch only)."""
        return [(int(layer.out_features),) for layer in self.layers]

    def stages(self) -> nn.ModuleList:
        """The trunk's blocks, in order (attention or skip policies attach per stage)."""
        return self.layers

    def macs(self) -> int:
        return sum(layer.macs() for layer in self.layers)


def _mlp(shape: ModelShape, widths: Sequence[int], generator: torch.Generator) -> nn.Module:
    return MLPTrunk(shape.in_features, widths, generator, binary_input=shape.binary_input)


def _conv(shape: ModelShape, widths: Sequence[int], generator: torch.Generator) -> nn.Module:
    if len(shape.sample_shape) != 3:
        raise TrunkError(
            f"model.trunk {shape.trunk!r} needs image inputs (batch, channels, H, W), not "
            f"(batch, {', '.join(map(str, shape.sample_shape))})"
        )
    return ConvTrunk(shape.in_features, widths, generator, input_size=shape.sample_shape[1:])


# model.trunk -> builder(shape, widths, generator) of the built-in trunks; any other value is a
# user's "module:factory" (.user), built at the size's width fraction instead of widths.
TRUNKS: dict[str, Callable[[ModelShape, Sequence[int], torch.Generator], nn.Module]] = {
    "mlp": _mlp,
    "conv": _conv,
}


def build_trunk(
    shape: ModelShape, widths: Sequence[int], generator: torch.Generator, width: float = 1.0
) -> nn.Module:
    """The shared trunk ``shape.trunk`` names: a built-in one at ``widths``, or a user's
    factory's module at ``width`` (TrunkError naming it if it does not fit the contract)."""
    if is_user_trunk(shape.trunk):
        return UserTrunk(shape.trunk, shape.sample_shape, width, generator)
    return TRUNKS[shape.trunk](shape, widths, generator)
