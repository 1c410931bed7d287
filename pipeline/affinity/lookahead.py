"""Inter-task affinity from one training: TAG's lookahead (Fifty, Amid, Zhao, Yu, Anil and Finn,
"Efficiently Identifying Task Groupings for Multi-Task Learning", NeurIPS 2021).

At a step with shared parameters theta and batch B, a lookahead update with task i's loss alone,
``theta_i = theta - lr * grad_theta L_i(theta, B)``, changes task j's loss on the same batch;
the affinity of i onto j at that step is ``Z(i -> j) = 1 - L_j(theta_i, B) / L_j(theta, B)``
(positive: i's gradient helps j). The recorder averages it over the steps of each epoch.

Approximations, as in the paper:

* the lookahead moves the **shared parameters only** (``model.shared_parameters()``); each
  task's head stays as it is;
* it is taken **every k-th step** (``every``; the paper's Section 4 notes the signal is stable
  enough to sample), the first step of the training included;
* the step is plain SGD with ``lookahead_lr`` (the paper's; default: the training's learning
  rate), whatever optimiser trains the network.

Vectorised over tasks: the T per-task gradients are one ``torch.func.jacrev`` of the loss vector
(T vector-Jacobian products batched by vmap), and the T x T lookahead losses one ``vmap`` over
the T updated parameter sets (``chunk`` source tasks at a time to bound memory). Nothing loops
over tasks in Python. Before and after losses are computed by the same code path, so their ratio
carries no implementation rounding difference.

A task with no label in a step's batch has no loss there (0 by the masked mean): its row and
column of that step are NaN and left out of the average; ``steps`` counts the steps that did
enter each pair. A pair no step covered has value NaN.

The recorder observes and never changes the training: the network's METRICS rows are those of
the same spec trained without it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from ..models.layers import vmap_friendly
from ..schema import AFFINITY
from ..training import StepObserver, Trainer


def _kernel_applies(model: nn.Module) -> bool:
    from ..models.hard_sharing import HardSharing
    from ..models.layers import BinaryInput, Dense
    from ..models.trunks import MLPTrunk

    return (
        isinstance(model, HardSharing)
        and type(model.trunk) is MLPTrunk
        and all(type(layer) in (Dense, BinaryInput) for layer in model.trunk.layers)
        and all(len(head.layers) == 1 for head in model.heads)
    )


def _dense_input(x, in_features: int) -> torch.Tensor:
    """A batch as a dense (B, F) matrix (a SparseBatch of 0/1 rows becomes its 0/1 rows)."""
    from ..models.layers import SparseBatch

    if not isinstance(x, SparseBatch):
        return x
    dense = torch.zeros(x.n_rows, in_features, device=x.indices.device)
    dense[x.row_of_entry(), x.indices] = 1.0
    return dense


class AffinityRecorder(StepObserver):
    def __init__(
        self,
        trainer: Trainer,
        every: int = 1,
        lookahead_lr: float | None = None,
        chunk: int | None = 64,
    ) -> None:
        if every < 1:
            raise ValueError(f"affinity.every: {every} must be at least 1")
        self.trainer = trainer
        self.every = int(every)
        self.lookahead_lr = float(trainer.lr if lookahead_lr is None else lookahead_lr)
        self.chunk = chunk
        n = len(trainer.tasks)
        self.step = 0
        self.sums = torch.zeros(n, n, dtype=torch.float64)
        self.counts = torch.zeros(n, n, dtype=torch.int64)
        self.epochs: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.seconds = 0.0

    # ---- one lookahead ---------------------------------------------------------------------
    def step_affinity(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        """(source, target) affinities at the model's current parameters on ``batch``; NaN
        where either task has no label in the batch."""
        if _kernel_applies(model):
            lookahead, before = self._kernel_lookahead(model, batch)
        else:
            lookahead, before = self._generic_lookahead(model, batch)
        value = 1.0 - lookahead.double() / before.double()
        labelled = self.trainer.labelled_in(batch)
        value[~labelled, :] = float("nan")
        value[:, ~labelled] = float("nan")
        return value

    def _generic_lookahead(self, model: nn.Module, batch: torch.Tensor):
        """Any architecture: T gradients by jacrev, T updated forwards by vmap."""
        trainer = self.trainer
        shared_ids = {id(p) for p in model.shared_parameters()}
        params = {name: p.detach() for name, p in model.named_parameters()}
        buffers = dict(model.named_buffers())
        shared = {
            name: p for name, p in params.items() if id(model.get_parameter(name)) in shared_ids
        }
        fixed = {name: p for name, p in params.items() if name not in shared}
        x = trainer.batch_input(batch)

        def losses_with(shared_values: dict[str, torch.Tensor]) -> torch.Tensor:
            outputs = functional_call(model, ({**fixed, **shared_values}, buffers), (x,))
            return trainer.losses_from_outputs(outputs, batch)

        lr = self.lookahead_lr
        with vmap_friendly():
            before = losses_with(shared).detach()
            gradients = jacrev(losses_with, chunk_size=self.chunk)(shared)

            def after(gradient: dict[str, torch.Tensor]) -> torch.Tensor:
                return losses_with({n: shared[n] - lr * gradient[n] for n in shared})

            with torch.no_grad():
                lookahead = vmap(after, chunk_size=self.chunk)(gradients)
        return lookahead, before

    @torch.no_grad()
    def _kernel_lookahead(self, model: nn.Module, batch: torch.Tensor):
        """Hard sharing over an MLP trunk with one linear layer per head (the default model),
        exactly, without materialising any per-task gradient.

        For a trunk layer ``z = a W^T + b`` (rows are samples), task i's gradient is
        ``(delta_i^T a, 1^T delta_i)`` with ``delta_i = dL_i/dz``, so after the lookahead step
        the layer maps the (already updated) input ``a'`` to
        ``a' W^T + b - lr ((a' a^T) delta_i + 1 1^T delta_i)``: B x B kernels instead of T
        copies of W. The T deltas come from one backward of the T stacked heads, propagated
        through the trunk as a batch of T; the T x T losses from one matmul with the stacked
        heads. Same numbers as the generic path (tested against the task-by-task reference)."""
        trainer = self.trainer
        lr = self.lookahead_lr
        layers = list(model.trunk.layers)
        heads = [head.layers[0] for head in model.heads]
        x = trainer.batch_input(batch)
        # Forward, keeping every layer's input and pre-activation.
        inputs, pre = [], []
        a = x
        for layer in layers:
            inputs.append(a)
            z = layer(a)
            pre.append(z)
            a = torch.relu(z)
        head_weight = torch.cat([h.weight for h in heads])  # (outputs, d)
        head_bias = torch.cat([h.bias for h in heads])
        widths = [h.out_features for h in heads]
        owner = torch.repeat_interleave(torch.arange(len(heads)), torch.tensor(widths))

        def losses_of(logits: torch.Tensor) -> torch.Tensor:
            return trainer.losses_from_outputs(list(logits.split(widths, dim=1)), batch)

        with torch.enable_grad():
            logits = torch.nn.functional.linear(a, head_weight, head_bias).requires_grad_()
            before = losses_of(logits)
            # Each task's loss reads only its own head's columns: one backward gives them all.
            (d_logits,) = torch.autograd.grad(before.sum(), logits)
        # dL_i/da at the trunk's output, per task i: (T, B, d).
        per_column = d_logits.T[:, :, None] * head_weight[:, None, :]
        grad_a = torch.zeros(len(heads), *a.shape, dtype=a.dtype, device=a.device)
        grad_a.index_add_(0, owner.to(a.device), per_column)
        deltas = [None] * len(layers)
        for k in range(len(layers) - 1, -1, -1):
            deltas[k] = grad_a * (pre[k] > 0)
            if k:
                grad_a = deltas[k] @ layers[k].weight
        # The lookahead forward, T updated trunks at once.
        first = _dense_input(inputs[0], layers[0].in_features)
        kernel = first @ first.T  # (B, B), the same for every task
        z = pre[0] - lr * (kernel @ deltas[0] + deltas[0].sum(dim=1, keepdim=True))
        for k in range(1, len(layers)):
            a_new = torch.relu(z)
            kernel = a_new @ inputs[k].T  # (T, B, B)
            z = torch.nn.functional.linear(a_new, layers[k].weight, layers[k].bias) - lr * (
                kernel @ deltas[k] + deltas[k].sum(dim=1, keepdim=True)
            )
        logits = torch.nn.functional.linear(torch.relu(z), head_weight, head_bias)
        lookahead = vmap(losses_of, chunk_size=self.chunk)(logits)
        return lookahead, before.detach()

    # ---- StepObserver ----------------------------------------------------------------------
    def on_step(self, model: nn.Module, batch: torch.Tensor, losses: torch.Tensor) -> None:
        due = self.step % self.every == 0
        self.step += 1
        if not due:
            return
        import time

        started = time.perf_counter()
        value = self.step_affinity(model, batch).cpu()
        finite = torch.isfinite(value)
        self.sums += torch.where(finite, value, 0.0)
        self.counts += finite
        self.seconds += time.perf_counter() - started

    def end_epoch(self, epoch: int) -> None:
        counts = self.counts.numpy().copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts > 0, self.sums.numpy() / np.maximum(counts, 1), np.nan)
        self.epochs.append((epoch, mean, counts))
        self.sums.zero_()
        self.counts.zero_()

    def state_dict(self) -> dict:
        return {
            "step": self.step, "sums": self.sums.clone(), "counts": self.counts.clone(),
            "seconds": self.seconds,
            "epochs": [(e, torch.from_numpy(m), torch.from_numpy(c)) for e, m, c in self.epochs],
        }  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.step, self.seconds = int(state["step"]), float(state["seconds"])
        self.sums.copy_(state["sums"])
        self.counts.copy_(state["counts"])
        self.epochs = [(int(e), m.numpy(), c.numpy()) for e, m, c in state["epochs"]]

    # ---- output ----------------------------------------------------------------------------
    def table(self, config_hash: str) -> pa.Table:
        """Every recorded epoch as AFFINITY rows (source-major)."""
        trainer = self.trainer
        tasks = np.asarray(trainer.tasks, dtype=object)
        n = len(tasks)
        source = np.repeat(tasks, n)
        target = np.tile(tasks, n)
        columns: dict[str, list] = {name: [] for name in AFFINITY.names}
        parts = []
        for epoch, mean, counts in self.epochs:
            parts.append(
                {
                    "source": source, "target": target,
                    "epoch": np.full(n * n, epoch, dtype=np.int32),
                    "value": mean.reshape(-1), "steps": counts.reshape(-1).astype(np.int32),
                }
            )  # fmt: skip
        rows = n * n * len(parts)
        constant = {
            "dataset": trainer.data.name, "network": trainer.network.name,
            "architecture": trainer.spec["architecture"], "weighting": trainer.spec["weighting"],
            "seed": int(trainer.spec["seed"]), "every": self.every,
            "lookahead_lr": self.lookahead_lr, "config_hash": config_hash,
        }  # fmt: skip
        for name in AFFINITY.names:
            if name in constant:
                columns[name] = pa.repeat(pa.scalar(constant[name]), rows) if rows else []
            else:
                columns[name] = np.concatenate([p[name] for p in parts]) if parts else []
        return (
            pa.table({k: v for k, v in columns.items()}, schema=AFFINITY)
            if rows
            else AFFINITY.empty_table()
        )
