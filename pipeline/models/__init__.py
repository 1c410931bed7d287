"""Architecture registry and the inference-cost model.

Cost is computed from the built model: its multiply-adds relative to the full-size single-task
network of the same architecture and dataset (= 1.0). "Half size" is the trunk width whose
single-task cost is closest to 0.5 of that. Architectures (one file each, paper cited there):
``hard_sharing`` (default), ``mtan`` (soft attention), ``adashare`` (learned skip policy over a
residual trunk; its cost is the model's ``macs()`` once the policy is fixed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .adashare import AdaShare
from .hard_sharing import HardSharing
from .mtan import MTAN

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "hard_sharing": HardSharing,
    "mtan": MTAN,
    "adashare": AdaShare,
}

SIZE_FRACTIONS = {"full": 1.0, "half": 0.5}


@dataclass(frozen=True)
class ModelShape:
    in_features: int
    hidden: tuple[int, ...]
    head_hidden: tuple[int, ...]
    binary_input: bool = False


def build_model(
    architecture: str,
    shape: ModelShape,
    widths: Sequence[int],
    output_dims: Sequence[int],
    generator: torch.Generator,
) -> nn.Module:
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"model.architecture: unknown {architecture!r}; known: {sorted(ARCHITECTURES)}"
        )
    return ARCHITECTURES[architecture](
        shape.in_features,
        list(widths),
        list(shape.head_hidden),
        list(output_dims),
        generator,
        binary_input=shape.binary_input,
    )


def model_macs(architecture: str, shape: ModelShape, widths: Sequence[int], output_dims) -> int:
    # Counted on the real module tree, so a new layer type cannot be forgotten in a formula.
    model = build_model(architecture, shape, widths, output_dims, torch.Generator())
    return int(model.macs())


def scaled_widths(hidden: Sequence[int], first: int) -> tuple[int, ...]:
    """Trunk widths with the first layer at ``first`` and the others scaled in proportion."""
    return tuple(max(1, round(first * h / hidden[0])) for h in hidden)


def widths_for_size(architecture: str, shape: ModelShape, size: str) -> tuple[int, ...]:
    """The trunk widths whose single-task cost is closest to the size's fraction of full."""
    fraction = SIZE_FRACTIONS[size]
    if fraction == 1.0:
        return tuple(shape.hidden)
    full = model_macs(architecture, shape, shape.hidden, [1])

    def ratio(first: int) -> float:
        return model_macs(architecture, shape, scaled_widths(shape.hidden, first), [1]) / full

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
    """Multiply-adds of the architecture's full-size single-task network (cost 1.0)."""
    return model_macs(architecture, shape, shape.hidden, [1])


def network_cost(
    architecture: str, shape: ModelShape, widths: Sequence[int], output_dims: Sequence[int]
) -> tuple[int, float]:
    """(multiply-adds, cost relative to the full-size single-task network)."""
    macs = model_macs(architecture, shape, widths, output_dims)
    reference = model_macs(architecture, shape, shape.hidden, [1])
    return macs, macs / reference
