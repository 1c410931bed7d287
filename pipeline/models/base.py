"""The contract every architecture fulfils, so the one training loop needs no special cases.

An architecture is built as ``cls(in_features, widths, head_hidden, output_dims, generator,
binary_input=...)`` and returns one output per task from ``forward``. The :class:`Trainer
<pipeline.training.Trainer>` talks to it only through the hooks below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

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
    # Can same-shape networks of this architecture train as one pack (pipeline.packing)? If
    # not, why (each such network's log says it).
    packable = False
    why_not_packed = "this architecture has no packed (stacked-parameter) form"

    def __init__(
        self,
        in_features: int,
        widths: Sequence[int],
        head_hidden: Sequence[int],
        output_dims: Sequence[int],
        generator: torch.Generator,
        binary_input: bool = False,
    ) -> None:
        super().__init__()

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
