"""Architecture registry and the inference-cost model.

An architecture takes a built trunk (LibMTL's ``AbsArchitecture(encoder_class, decoders)``;
the contract is in :mod:`.base`): ``model.trunk`` chooses the trunk (``mlp``, ``conv`` or your
own ``module:factory``; :mod:`.trunks`), ``model.architecture`` what is built over it. One file
per architecture, paper cited there: ``hard_sharing`` (default), ``mtan`` (soft attention over
the trunk's stages), ``adashare`` (learned skip policy over the MLP's residual form; its cost is
the model's ``macs()`` once the policy is fixed). An architecture that cannot be built over a
trunk says so in its ``trunks`` / ``trunks_reason`` (config validation quotes them).

Cost is computed from the built model: its multiply-adds relative to the full-size single-task
network of the same architecture and dataset (= 1.0). "Half size" is the trunk width whose
single-task cost is closest to 0.5 of that.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .adashare import AdaShare
from .base import Architecture
from .hard_sharing import HardSharing
from .mtan import MTAN
from .trunks import TRUNKS, ModelShape, build_trunk
from .user import TrunkError, UserTrunk, is_user_trunk

__all__ = [
    "ARCHITECTURES", "SIZE_FRACTIONS", "TRUNKS", "Architecture", "ModelShape", "TrunkError",
    "UserTrunk", "build_model", "build_trunk", "is_user_trunk", "model_macs", "network_cost",
    "reference_macs", "scaled_widths", "widths_for_size",
]  # fmt: skip

# model.architecture -> class: the one registry (each class says which trunks it takes).
ARCHITECTURES: dict[str, type[Architecture]] = {
    "hard_sharing": HardSharing,
    "mtan": MTAN,
    "adashare": AdaShare,
}

SIZE_FRACTIONS = {"full": 1.0, "half": 0.5}


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
    size's fraction, passed to a user's trunk factory (built-in trunks take ``widths``).
    Trunk first, then the architecture's modules (pipeline/models/base.py)."""
    cls = ARCHITECTURES.get(architecture)
    if cls is None:
        raise ValueError(
            f"model.architecture: unknown {architecture!r}; known: {sorted(ARCHITECTURES)}"
        )
    refusal = cls.refusal(shape.trunk)
    if refusal:
        raise ValueError(refusal)
    dense = [bool(d) for d in (dense or [False] * len(output_dims))]
    trunk = cls.make_trunk(shape, widths, generator, width)
    return cls(
        trunk, list(output_dims), generator, head_hidden=list(shape.head_hidden), dense=dense,
        label_size=shape.label_size,
    )  # fmt: skip


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
