"""Architecture registry and the inference-cost model.

Cost is computed from the built model: its multiply-adds relative to the full-size single-task
network of the same architecture and dataset (= 1.0). "Half size" is the trunk width whose
single-task cost is closest to 0.5 of that. Architectures (one file each, paper cited there):
``hard_sharing`` (default), ``mtan`` (soft attention), ``adashare`` (learned skip policy over a
residual trunk; its cost is the model's ``macs()`` once the policy is fixed).

``ARCHITECTURES`` builds them over the MLP trunk (tables, vector tasks); ``TRUNK_ARCHITECTURES``
over any other trunk (conv, a user's) or with dense tasks. An architecture absent from the
latter is refused over such trunks, with its ``NEEDS_MLP_TRUNK`` reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .adashare import AdaShare
from .hard_sharing import HardSharing
from .mtan import MTAN, StagedMTAN
from .trunks import TRUNKS
from .user import TrunkError, UserTrunk, is_user_trunk

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "hard_sharing": HardSharing,
    "mtan": MTAN,
    "adashare": AdaShare,
}

SIZE_FRACTIONS = {"full": 1.0, "half": 0.5}


# Over a trunk other than mlp (model.trunk conv or "module:factory") or with dense tasks:
# architecture -> class, built with the trunk module (build_model). MTAN attends the trunk's
# stages (a user's trunk needs forward_stages; pipeline/models/mtan.py).
TRUNK_ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "hard_sharing": HardSharing,
    "mtan": StagedMTAN,
}
ANY_TRUNK_ARCHITECTURES = tuple(TRUNK_ARCHITECTURES)
# Why the others need the mlp trunk (the validation error says it).
NEEDS_MLP_TRUNK = {
    "adashare": (
        "its per-task skips need residual blocks whose input and output have one shape, but the "
        "conv trunk's stages change resolution and channels (a skipped stage has no identity "
        "path)"
    ),
}


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


def build_model(
    architecture: str,
    shape: ModelShape,
    widths: Sequence[int],
    output_dims: Sequence[int],
    generator: torch.Generator,
    dense: Sequence[bool] | None = None,
    width: float = 1.0,
) -> nn.Module:
    """The network: ``dense`` says which tasks are dense (per-pixel heads); ``width`` is the
    size's fraction, passed to a user's trunk factory (built-in trunks take ``widths``)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"model.architecture: unknown {architecture!r}; known: {sorted(ARCHITECTURES)}"
        )
    dense = [bool(d) for d in (dense or [False] * len(output_dims))]
    if shape.trunk != "mlp" or any(dense):
        if architecture not in TRUNK_ARCHITECTURES:
            raise ValueError(
                f"model.architecture {architecture!r} needs the mlp trunk and vector tasks "
                f"({NEEDS_MLP_TRUNK.get(architecture, 'not implemented over other trunks')}); "
                f"over model.trunk {shape.trunk!r} use {list(TRUNK_ARCHITECTURES)}"
            )
        input_shape = shape.input_shape or (shape.in_features,)
        trunk = build_trunk(shape, widths, generator, width)
        return TRUNK_ARCHITECTURES[architecture](
            shape.in_features, list(widths), list(shape.head_hidden), list(output_dims),
            generator, trunk_module=trunk, dense=dense, label_size=shape.label_size,
            input_shape=input_shape,
        )  # fmt: skip
    return ARCHITECTURES[architecture](
        shape.in_features,
        list(widths),
        list(shape.head_hidden),
        list(output_dims),
        generator,
        binary_input=shape.binary_input,
    )


def build_trunk(
    shape: ModelShape, widths: Sequence[int], generator: torch.Generator, width: float = 1.0
) -> nn.Module:
    """The shared trunk ``shape.trunk`` names: a built-in one at ``widths``, or a user's
    factory's module at ``width`` (TrunkError naming it if it does not fit the contract)."""
    input_shape = shape.input_shape or (shape.in_features,)
    if is_user_trunk(shape.trunk):
        return UserTrunk(shape.trunk, input_shape, width, generator)
    if shape.trunk == "mlp":
        return TRUNKS["mlp"](shape.in_features, widths, generator, binary_input=shape.binary_input)
    if len(input_shape) != 3:
        raise TrunkError(
            f"model.trunk {shape.trunk!r} needs image inputs (batch, channels, H, W), not "
            f"(batch, {', '.join(map(str, input_shape))})"
        )
    return TRUNKS[shape.trunk](shape.in_features, widths, generator, input_size=input_shape[1:])


def model_macs(
    architecture: str,
    shape: ModelShape,
    widths: Sequence[int],
    output_dims,
    dense: Sequence[bool] | None = None,
) -> int:
    # Counted on the real module tree, so a new layer type cannot be forgotten in a formula.
    model = build_model(architecture, shape, widths, output_dims, torch.Generator(), dense)
    return int(model.macs())


def scaled_widths(hidden: Sequence[int], first: int) -> tuple[int, ...]:
    """Trunk widths with the first layer at ``first`` and the others scaled in proportion."""
    return tuple(max(1, round(first * h / hidden[0])) for h in hidden)


def widths_for_size(architecture: str, shape: ModelShape, size: str) -> tuple[int, ...]:
    """The trunk widths whose single-task cost is closest to the size's fraction of full."""
    fraction = SIZE_FRACTIONS[size]
    if fraction == 1.0 or is_user_trunk(shape.trunk):
        # A user's trunk gets the fraction itself (build_model's width), not widths.
        return tuple(shape.hidden)
    reference = [shape.reference_dense]
    full = model_macs(architecture, shape, shape.hidden, [1], reference)

    def ratio(first: int) -> float:
        widths = scaled_widths(shape.hidden, first)
        return model_macs(architecture, shape, widths, [1], reference) / full

    # Cost grows with width: bisect for the first width at or above the target, then take
    # whichever neighbour is closer.
    lo, hi = 1, shape.hidden[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if ratio(mid) < fraction:
            lo = mid + 1
        else:
            hi = mid
    best = min({max(1, lo - 1), lo}, key=lambda w: abs(ratio(w) - fraction))
    return scaled_widths(shape.hidden, best)


def reference_macs(architecture: str, shape: ModelShape) -> int:
    """Multiply-adds of the architecture's full-size single-task network (cost 1.0): one
    output, dense if the dataset has dense tasks."""
    return model_macs(architecture, shape, shape.hidden, [1], [shape.reference_dense])


def network_cost(
    architecture: str,
    shape: ModelShape,
    widths: Sequence[int],
    output_dims: Sequence[int],
    dense: Sequence[bool] | None = None,
) -> tuple[int, float]:
    """(multiply-adds, cost relative to the full-size single-task network)."""
    macs = model_macs(architecture, shape, widths, output_dims, dense)
    return macs, macs / reference_macs(architecture, shape)
