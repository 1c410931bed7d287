"""AdaShare: Sun, Panda, Feris and Saenko, "AdaShare: Learning What To Share For Efficient Deep
Multi-Task Learning", NeurIPS 2020.

A residual trunk (:mod:`.residual`: stem + residual blocks) whose blocks each task may execute or
skip. Per task t and block l, learned logits ``alpha[t, l] = (execute, skip)``. One training job
runs the paper's two phases:

1. **Policy search** (``training.adashare``): ``warmup_epochs`` epochs training the weights with
   every block executed, then ``policy_epochs`` epochs training weights and logits jointly (the
   logits with their own Adam learning rate ``policy_lr``). In the forward pass each task's
   decision per block is a Gumbel-Softmax sample of its logits at temperature ``tau`` (soft
   samples, as the authors' ``hard_sampling: False``; ``tau`` is multiplied by ``tau_decay``
   after each epoch), mixing the block's output and its shortcut. The loss adds
   ``sparsity_weight * L_sparsity + sharing_weight * L_sharing`` to the weighted task losses:

   * ``L_sparsity = sum_t mean_l -log p_skip[t, l]`` (cross-entropy towards "skip", the
     authors' implementation of the paper's log-probability sparsity term): fewer blocks;
   * ``L_sharing = sum_{t<u} sum_l (L - l) / L * |p_exec[t, l] - p_exec[u, l]|``
     (l = 0 is the first block): tasks share the lower blocks.

   Defaults follow the authors' NYUv2 settings (policy_lr 0.01, both weights 0.05, tau 5, decay
   0.965), with far fewer epochs (the search is meant to stay cheap here).
2. **Retrain**: the policy is fixed to each task's most probable decision (execute iff
   ``p_exec > 0.5``) and the network is re-initialised and trained from scratch with it for
   ``training.epochs`` epochs. Only these epochs are recorded as METRICS epochs; the search is
   summarised as ``policy_block_<k>`` rows at epoch 0 (probability of executing block k when the
   search ended), and each recorded epoch repeats the fixed 0/1 decisions.

Cost (``macs()``, under the current fixed policy): the stem and heads as usual; a block is
computed once per distinct *input*, i.e. per distinct execute/skip prefix over the blocks before
it. Tasks with the same decisions so far share the block's output and it counts once; a task
that skips a block pays only its shortcut (nothing when widths match); tasks whose paths diverged
earlier compute a block they all execute separately, and it counts once per path. The forward
pass computes exactly that. Before the search (all blocks executed by all tasks) the cost is that
of the residual hard-sharing network, which is the reference (cost 1.0) at full size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..options import method_defaults
from .base import Architecture, Pretrained
from .heads import MLPHead
from .residual import ResidualTrunk
from .trunks import ModelShape

if TYPE_CHECKING:
    from ..training import Trainer

# Option defaults: schemas/config.schema.yaml (training.adashare), the one definition.
DEFAULTS = method_defaults("adashare")


class AdaShare(Architecture):
    name = "adashare"
    why_not_packed = "AdaShare's policy search (its pre-training phase) runs per network"
    # Its trunk is the MLP's residual form (make_trunk): only model.trunk mlp has one.
    trunks = ("mlp",)
    trunks_reason = (
        "its per-task skips need residual blocks whose input and output have one shape, but the "
        "conv trunk's stages change resolution and channels (a skipped stage has no identity "
        "path), and a trunk of your own has no blocks it can skip"
    )

    @classmethod
    def make_trunk(
        cls, shape: ModelShape, widths: Sequence[int], generator: torch.Generator, width: float
    ) -> nn.Module:
        """The residual form of the MLP trunk (stem + skippable blocks)."""
        return ResidualTrunk(shape.in_features, widths, generator, binary_input=shape.binary_input)

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
        if not isinstance(trunk, ResidualTrunk):
            raise TypeError("AdaShare is built over a ResidualTrunk (AdaShare.make_trunk)")
        self.trunk = trunk
        self.heads = nn.ModuleList(
            MLPHead(self.trunk.out_features, head_hidden, d, generator) for d in output_dims
        )
        n_tasks, n_blocks = len(output_dims), len(self.trunk.blocks)
        # Logits (execute, skip) per task and block; equal init (the authors' "equal" method).
        self.policy_logits = nn.Parameter(torch.zeros(n_tasks, n_blocks, 2))
        # The fixed decisions (1 = execute) used outside the search; all blocks until fixed.
        self.register_buffer("policy", torch.ones(n_tasks, n_blocks))
        # Gumbel noise comes from the training's generator, never the global RNG.
        self.generator = generator
        self.tau: float | None = None  # set during the policy search only

    @property
    def n_blocks(self) -> int:
        return len(self.trunk.blocks)

    # ---- forward passes -------------------------------------------------------------------
    def forward(self, x) -> list[torch.Tensor]:
        h = torch.relu(self.trunk.stem(x))
        if self.tau is not None:
            return self._forward_sampled(h)
        return self._forward_fixed(h)

    def _forward_sampled(self, h0: torch.Tensor) -> list[torch.Tensor]:
        uniform = torch.rand(self.policy_logits.shape, generator=self.generator)
        uniform = uniform.clamp(1e-10, 1 - 1e-10).to(h0.device)
        gumbel = -torch.log(-torch.log(uniform))
        execute = torch.softmax((self.policy_logits + gumbel) / self.tau, dim=-1)[..., 0]
        outputs = []
        for t, head in enumerate(self.heads):
            h = h0
            for k, block in enumerate(self.trunk.blocks):
                p = execute[t, k]
                h = p * block(h) + (1 - p) * block.skip(h)
            outputs.append(head(h))
        return outputs

    def _forward_fixed(self, h0: torch.Tensor) -> list[torch.Tensor]:
        decisions = self._decisions()
        paths: dict[tuple[bool, ...], torch.Tensor] = {(): h0}
        for k, block in enumerate(self.trunk.blocks):
            step: dict[tuple[bool, ...], torch.Tensor] = {}
            for path in decisions:
                prefix = path[: k + 1]
                if prefix not in step:
                    h = paths[prefix[:-1]]
                    step[prefix] = block(h) if prefix[-1] else block.skip(h)
            paths = step
        return [head(paths[path]) for path, head in zip(decisions, self.heads)]

    def _decisions(self) -> list[tuple[bool, ...]]:
        return [tuple(bool(v) for v in row) for row in self.policy.cpu().tolist()]

    # ---- the policy -----------------------------------------------------------------------
    def execute_probabilities(self) -> torch.Tensor:
        """(tasks, blocks): the probability that each task executes each block."""
        return torch.softmax(self.policy_logits, dim=-1)[..., 0]

    def sparsity_loss(self) -> torch.Tensor:
        if self.n_blocks == 0:
            return self.policy_logits.sum() * 0.0
        skip = torch.log_softmax(self.policy_logits, dim=-1)[..., 1]
        return -skip.mean(dim=1).sum()

    def sharing_loss(self) -> torch.Tensor:
        p = self.execute_probabilities()
        n_blocks = self.n_blocks
        depth = torch.arange(n_blocks, device=p.device, dtype=p.dtype)
        weights = (n_blocks - depth) / max(n_blocks, 1)
        total = p.sum() * 0.0
        for t in range(p.shape[0]):
            for u in range(t + 1, p.shape[0]):
                total = total + (weights * (p[t] - p[u]).abs()).sum()
        return total

    @torch.no_grad()
    def fix_policy(self) -> None:
        self.policy.copy_((self.execute_probabilities() > 0.5).to(self.policy.dtype))

    @torch.no_grad()
    def adopt_policy(self, searched: AdaShare) -> None:
        """Take another instance's logits and fixed policy (the retrain phase's fresh network)."""
        self.policy_logits.copy_(searched.policy_logits)
        self.policy.copy_(searched.policy)

    def pretrain(self, trainer: Trainer) -> Pretrained:
        """Phase 1 (see the module docstring) on this network, then phase 2's fresh network with
        the searched policy fixed. Records the search's final execute probabilities."""
        opts = {**DEFAULTS, **trainer.method_options(self.name)}
        weighting = trainer.new_weighting()
        weights = [p for name, p in self.named_parameters() if name != "policy_logits"]
        optimizer = torch.optim.Adam(
            [
                {"params": weights + list(weighting.parameters()), "lr": trainer.lr,
                 "weight_decay": trainer.weight_decay},
                {"params": [self.policy_logits], "lr": float(opts["policy_lr"]),
                 "weight_decay": 0.0},
            ]
        )  # fmt: skip
        warmup, search = int(opts["warmup_epochs"]), int(opts["policy_epochs"])
        if self.n_blocks == 0:
            search = 0
        tau = float(opts["tau"])

        def policy_loss() -> torch.Tensor:
            return (
                float(opts["sparsity_weight"]) * self.sparsity_loss()
                + float(opts["sharing_weight"]) * self.sharing_loss()
            )

        self.train()
        for epoch in range(1, warmup + search + 1):
            searching = epoch > warmup
            self.tau = tau if searching else None
            result = trainer.run_epoch(
                self, weighting, optimizer, extra_loss=policy_loss if searching else None
            )
            if result.steps:
                weighting.end_epoch(epoch, result.mean_losses())
            probs = self.execute_probabilities().detach().cpu()
            phase = "policy search" if searching else "policy warm-up"
            trainer.log(
                f"{phase} {epoch}/{warmup + search} | tau {tau if searching else 0:.3f} | "
                f"execute probabilities {[[round(v, 3) for v in row] for row in probs.tolist()]}"
            )
            if searching:
                tau *= float(opts["tau_decay"])
        self.tau = None
        self.fix_policy()
        probabilities = self.execute_probabilities().detach().cpu()
        retrained = trainer.build_model()
        retrained.adopt_policy(self)
        searched = {
            f"policy_block_{k + 1}": probabilities[:, k].tolist()
            for k in range(probabilities.shape[1])
        }
        return Pretrained(retrained, searched)

    # ---- interface used by training and the cost model -------------------------------------
    def recorded(self) -> dict[str, list[float]]:
        """Per-task values recorded each (retrain) epoch: the fixed decisions."""
        return {
            f"policy_block_{k + 1}": self.policy[:, k].cpu().tolist() for k in range(self.n_blocks)
        }

    def shared_parameters(self) -> list[nn.Parameter]:
        """The stem and the blocks every task executes (under the current policy)."""
        params = list(self.trunk.stem.parameters())
        for k, block in enumerate(self.trunk.blocks):
            if bool(self.policy[:, k].all()):
                params += list(block.parameters())
        return params

    def macs(self) -> int:
        total = self.trunk.stem.macs() + sum(head.macs() for head in self.heads)
        decisions = self._decisions()
        for k, block in enumerate(self.trunk.blocks):
            for prefix in {path[: k + 1] for path in decisions}:
                total += block.macs() if prefix[-1] else block.skip_macs()
        return total
