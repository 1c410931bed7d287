"""The contract every architecture fulfils, so the one training loop needs no special cases.

An architecture takes a built trunk, as in LibMTL (``AbsArchitecture(task_name, encoder_class,
decoders, ...)``): the trunk is one choice (``model.trunk``: the MLP, the conv trunk, a user's
``module:factory``; pipeline/models/trunks.py), the architecture another, and any pair the
architecture's ``trunks`` allows can be built. :func:`pipeline.models.build_model` is the one
builder; it calls, in this order (the order the generator's draws initialise the weights in):

1. ``trunk = cls.make_trunk(shape, widths, generator, width)``: the trunk ``shape.trunk``
   names (:func:`.trunks.build_trunk`), unless the architecture needs a form of it of its own
   (AdaShare: the MLP's residual form);
2. ``cls(trunk, output_dims, generator, head_hidden=..., dense=..., label_size=...)``: the
   architecture's own modules (attention, policies) and one head per task, every weight drawn
   from ``generator`` (never the global RNG: trainings may share a process).

A trunk has ``input_shape`` (one sample's), ``out_features``, ``spatial`` and ``macs()``.
``forward`` returns one output per task; the :class:`Trainer <pipeline.training.Trainer>` talks
to the network only through the hooks below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from .trunks import ModelShape, build_trunk

if TYPE_CHECKING:
    from ..training import Trainer


@dataclass
class Pretrained:
    """What an optional pre-training phase hands to the recorded training: the network to train
    (possibly a fresh one) and per-task values to record at epoch 0."""

    model: Architecture
    recorded: dict[str, list[float]] = field(default_factory=dict)


class Architecture(nn.Module):
    name = "base"
    # The model.trunk values the architecture can be built over (None: any trunk) and why it
    # cannot over the others: config validation's refusal quotes both.
    trunks: tuple[str, ...] | None = None
    trunks_reason = ""
    # Can same-shape networks of this architecture train as one pack (pipeline.packing)? If
    # not, why (each such network's log says it).
    packable = False
    why_not_packed = "this architecture has no packed (stacked-parameter) form"

    def __init__(
        self,
        trunk: nn.Module,
        output_dims: Sequence[int],
        generator: torch.Generator,
        head_hidden: Sequence[int] = (),
        dense: Sequence[bool] | None = None,
        label_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()

    @classmethod
    def make_trunk(
        cls, shape: ModelShape, widths: Sequence[int], generator: torch.Generator, width: float
    ) -> nn.Module:
        """The trunk this architecture is built over: the configured one by default."""
        return build_trunk(shape, widths, generator, width)

    @classmethod
    def refusal(cls, trunk: str) -> str | None:
        """Why this architecture cannot be built over ``model.trunk`` ``trunk`` (None: it can)."""
        if cls.trunks is None or trunk in cls.trunks:
            return None
        return (
            f"model.architecture {cls.name!r} needs model.trunk {' or '.join(cls.trunks)} "
            f"({cls.trunks_reason or 'not implemented over other trunks'})"
        )

    def forward(self, x) -> list[torch.Tensor]:
        raise NotImplementedError

    def shared_parameters(self) -> list[nn.Parameter]:
        """The parameters every task's output depends on (GradNorm's last shared layer, TAG's
        lookahead)."""
        raise NotImplementedError

    def macs(self) -> int:
        """Inference multiply-adds of the network as it will be deployed."""
        raise NotImplementedError

    def recorded(self) -> dict[str, list[float]]:
        """Per-task values to record each epoch as METRICS rows (split 'train', metric = key)."""
        return {}

    def pretrain(self, trainer: Trainer) -> Pretrained | None:
        """An optional phase before the recorded epochs (AdaShare's policy search), driven by
        ``trainer.run_epoch``. None: train this network as built."""
        return None


def formula_cost(trunk: nn.Module) -> bool:
    """Whether a network over ``trunk`` counts its cost by its layers' formulas (the MLP, whose
    first layer may only take a sparse batch) rather than by torch's FLOP counter on one
    sample of ``trunk.input_shape`` (convolutions, a user's module)."""
    from .trunks import MLPTrunk

    return isinstance(trunk, MLPTrunk)
