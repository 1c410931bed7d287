"""Grad-TAG: task affinity from projected gradients of one training (Li, Sharma & Zhang, KDD
2024, "Scalable Multitask Learning Using Gradient-based Estimation of Task Affinity"; code:
github.com/VirtuosoResearch/ScalableMTL, read at commit 2cee66c).

The method, as in the paper and its code (``exps_on_graph_datasets/
fast_estimate_collect_gradients.py`` and ``fast_estimate_linear_model.py``):

1. One training of the network on every task gives the meta-initialisation theta*.
2. For every training sample x and task t, the gradient of t's output f_t(x) with respect to
   the shared parameters at theta* is projected to d dimensions by a seeded Rademacher matrix
   P scaled by 1/sqrt(d) (the repository's ``2 * randint(2) - 1`` times ``1/sqrt(d)``):
   ``g_t(x) = P^T grad f_t(x; theta*)``.
3. A subset S's fine-tuned network is estimated by the first-order Taylor expansion around
   theta*: ``f_t(x; theta* + P w) ~ f_t(x; theta*) + g_t(x)^T w``, with w fitted by a
   logistic regression (binary tasks; least squares for regression) with an L2 penalty
   (the repository: scikit-learn's ``LogisticRegression(penalty='l2', C=1e-2)``) on S's
   training samples. Its loss on each member's validation samples is the estimated loss of
   that member in S.
4. The estimated losses of many subsets give the higher-order affinity (as for sampled
   subsets, :mod:`pipeline.affinity.higher_order`), whose clustering gives the groups.

What differs here, and why:

* **The gradients are never formed.** The default network is hard sharing with one linear
  head per task: ``f_t(x) = h_t . phi(x) + b_t``, so ``g_t(x) = (J_phi(x) P)^T h_t``. The d
  columns of ``J_phi(x) P`` are d forward-mode Jacobian-vector products of the trunk
  (``torch.func.jvp`` under ``vmap`` over the d random tangents), i.e. d extra forward passes,
  whatever the number of tasks. This covers the sparse binary first layer (1024 x 128 weights,
  most of the trunk's parameters) at the cost of a forward pass: its tangent is gathered at the
  set bits like the layer itself (``vmap_friendly``). All shared (trunk) parameters are
  projected; heads are task-specific and stay at theta* (as TAG's lookahead does).
* **The logistic regression is solved by one Newton step from w = 0** (the first-order
  expansion plus a second-order one of the loss in w). Each task's gradient and Gauss-Newton
  matrix of its mean training loss in the projected space (d and d x d numbers) are computed
  once; a subset's step is then ``w_S = -(sum_{t in S} H_t + lambda I)^-1 sum_{t in S} g_t``:
  one batched d x d solve per subset, so thousands of subsets take seconds, at 617 tasks too.
  For least squares the step is the exact solution. The L2 penalty ``lambda`` is ``ridge``
  times the mean diagonal of the tasks' mean ``H_t`` (unit-free: the same ``ridge`` means the
  same thing on any data). Large ``ridge`` makes ``w_S`` a small gradient step on S's loss (the
  estimate then measures gradient alignment, as TAG does, but evaluated on validation
  samples); small ``ridge`` fits S.
* Each member's estimated validation loss is the exact loss of the linearised outputs (no
  second-order approximation there).

Supported: ``hard_sharing`` networks whose heads are one linear layer (``model.head_hidden:
[]``), binary and regression tasks. Anything else is refused with a message saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call, jvp, vmap

from ..training import StepObserver

SUPPORTED_TYPES = ("binary", "regression")


@dataclass
class GradientStatistics:
    """What every subset's estimate needs, computed once at theta*.

    ``hessian[t]`` (d x d) and ``gradient[t]`` (d): the Gauss-Newton matrix and gradient of
    task t's mean training loss in the projected space at w = 0. ``val_*``: every labelled
    validation cell (sample, task) as its projected gradient, output at theta*, label, and task
    index, for evaluating the linearised outputs.
    """

    tasks: tuple[str, ...]
    types: tuple[str, ...]
    hessian: torch.Tensor  # (T, d, d) float64
    gradient: torch.Tensor  # (T, d) float64
    train_count: torch.Tensor  # (T,) labelled training samples per task
    val_features: torch.Tensor  # (cells, d)
    val_output: torch.Tensor  # (cells,)
    val_label: torch.Tensor  # (cells,)
    val_task: torch.Tensor  # (cells,) int64, sorted
    dim: int
    seconds: float = 0.0

    @property
    def val_loss_at_init(self) -> np.ndarray:
        """Each task's validation loss at theta* (mean over its labelled cells)."""
        losses = _cell_losses(self.val_output[:, None], self.val_label, self._val_binary())
        return _task_means(losses[:, 0], self.val_task, len(self.tasks)).numpy()

    def _val_binary(self) -> torch.Tensor:
        binary = torch.tensor([k == "binary" for k in self.types])
        return binary[self.val_task]


def _check_model(model: nn.Module, types: Sequence[str], tasks: Sequence[str]) -> None:
    from ..models.hard_sharing import HardSharing
    from ..models.heads import MLPHead

    if not isinstance(model, HardSharing):
        raise ValueError(
            f"sweep.strategy gradtag: needs model.architecture hard_sharing, not "
            f"{getattr(model, 'name', type(model).__name__)!r} (the gradient is taken through "
            f"one shared trunk and linear heads)"
        )
    if not all(type(h) is MLPHead and len(h.layers) == 1 for h in model.heads):
        raise ValueError(
            "sweep.strategy gradtag: needs one linear layer per head (model.head_hidden: [])"
        )
    bad = [f"{t!r} ({k})" for t, k in zip(tasks, types) if k not in SUPPORTED_TYPES]
    if bad:
        raise ValueError(
            f"sweep.strategy gradtag: supports binary and regression tasks; not {', '.join(bad)}"
        )
    if any(h.layers[0].out_features != 1 for h in model.heads):
        raise ValueError("sweep.strategy gradtag: every head must have one output")


def projection_tangents(trunk: nn.Module, dim: int, seed: int) -> dict[str, torch.Tensor]:
    """The random projection P as d tangents of the trunk's parameters: entries +-1/sqrt(d),
    drawn from a generator seeded with ``seed`` (same seed, same P)."""
    generator = torch.Generator().manual_seed(int(seed))
    scale = 1.0 / np.sqrt(dim)
    tangents = {}
    for name, p in trunk.named_parameters():
        signs = torch.randint(0, 2, (dim, *p.shape), generator=generator, dtype=torch.int8)
        tangents[name] = (signs.to(p.dtype) * 2 - 1).mul_(scale).to(p.device)
    return tangents


def _is_mlp(trunk: nn.Module) -> bool:
    from ..models.layers import BinaryInput, Dense
    from ..models.trunks import MLPTrunk

    return type(trunk) is MLPTrunk and all(
        type(layer) in (Dense, BinaryInput) for layer in trunk.layers
    )


def _mlp_jvp(trunk: nn.Module, x, tangents: dict[str, torch.Tensor], tables: dict):
    """The trunk's output and its d directional derivatives along the tangents, by hand for
    the MLP trunk (the default): ``torch.func.jvp`` under ``vmap`` gives the same numbers
    (tested) but gathers the sparse first layer's tangent row by row, ~10x slower. For
    ``z = a W^T + b``: ``dz = da W^T + a dW^T + db``; the binary first layer's ``a dW`` is one
    ``embedding_bag`` over the d tangents side by side (``tables``: that layout, cached by the
    caller across batches)."""
    from ..models.layers import BinaryInput

    a, moved = x, None
    for k, layer in enumerate(trunk.layers):
        dw, db = tangents[f"layers.{k}.weight"], tangents[f"layers.{k}.bias"]
        d = dw.shape[0]
        z = layer(a)
        if isinstance(layer, BinaryInput):
            if k not in tables:  # (in, d * out), built once per trunk and tangents
                tables[k] = dw.permute(1, 0, 2).reshape(layer.in_features, -1).contiguous()
            dz = nn.functional.embedding_bag(a.indices, tables[k], a.offsets, mode="sum")
            dz = dz.reshape(-1, d, layer.out_features).permute(1, 0, 2)
        else:
            dz = torch.einsum("bi,doi->dbo", a, dw)
        dz = dz + db[:, None, :]
        if moved is not None:
            dz = dz + moved @ layer.weight.T
        active = (z > 0).to(z.dtype)
        a, moved = z * active, dz * active
    return a, moved


def projected_outputs(
    model: nn.Module, x, tangents: dict[str, torch.Tensor], tables: dict | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every task's output on the batch ``x`` (B, T) and its projected gradient with respect
    to the trunk's parameters, ``g_t(x) = P^T grad f_t(x)`` (T, B, d), without forming any
    gradient: ``(J_phi(x) P)^T h_t`` (module doc). Call within ``vmap_friendly()``."""
    trunk = model.trunk
    head_weight = torch.cat([h.layers[0].weight for h in model.heads]).detach()  # (T, c)
    head_bias = torch.cat([h.layers[0].bias for h in model.heads]).detach()
    if _is_mlp(trunk):
        phi, moved = _mlp_jvp(trunk, x, tangents, {} if tables is None else tables)
    else:
        params = {name: p.detach() for name, p in trunk.named_parameters()}

        def directional(tangent):
            return jvp(lambda p: functional_call(trunk, p, (x,)), (params,), (tangent,))

        phi, moved = vmap(directional, out_dims=(None, 0))(tangents)  # (B, c), (d, B, c)
    output = phi @ head_weight.T + head_bias
    return output, torch.einsum("dbc,tc->tbd", moved, head_weight)


def _cell_losses(z: torch.Tensor, y: torch.Tensor, binary: torch.Tensor) -> torch.Tensor:
    """Per-cell loss of outputs ``z`` (cells, k) against labels ``y`` (cells,): the training
    losses of pipeline.metrics (binary cross-entropy on logits, squared error)."""
    y = y[:, None].to(z.dtype)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, y.expand_as(z), reduction="none")
    return torch.where(binary[:, None], bce, (z - y) ** 2)


def _task_means(values: torch.Tensor, task: torch.Tensor, n_tasks: int) -> torch.Tensor:
    sums = torch.zeros(n_tasks, dtype=values.dtype).index_add_(0, task, values)
    counts = torch.bincount(task, minlength=n_tasks).clamp_min(1)
    return sums / counts


@torch.no_grad()
def gradient_statistics(
    model: nn.Module,
    trainer,
    dim: int = 128,
    seed: int = 0,
    chunk: int = 256,
) -> GradientStatistics:
    """Project the output gradients of every labelled (sample, task) cell of the training and
    validation splits at the model's parameters (theta*), and reduce the training cells to
    each task's gradient and Gauss-Newton matrix (module doc). ``trainer`` is the
    :class:`pipeline.training.Trainer` that trained ``model`` (its data, split and tasks)."""
    import time

    from ..models.layers import vmap_friendly

    started = time.perf_counter()
    tasks, types = tuple(trainer.tasks), tuple(trainer.types)
    _check_model(model, types, tasks)
    model.eval()
    tangents = projection_tangents(model.trunk, dim, seed)
    binary = torch.tensor([k == "binary" for k in types], device=trainer.inputs.y.device)
    n_tasks = len(tasks)
    y_all = trainer.inputs.y
    tables: dict = {}

    hessian = torch.zeros(n_tasks, dim, dim, dtype=torch.float64)
    gradient = torch.zeros(n_tasks, dim, dtype=torch.float64)
    count = torch.zeros(n_tasks, dtype=torch.float64)
    val_parts: list[tuple[torch.Tensor, ...]] = []
    with vmap_friendly():
        for split in ("train", "val"):
            rows = trainer.inputs.rows[split]
            for start in range(0, rows.numel(), chunk):
                batch = rows[start : start + chunk]
                output, projected = projected_outputs(
                    model, trainer.batch_input(batch), tangents, tables
                )
                y = y_all[batch].T  # (T, B)
                labelled = ~torch.isnan(y)
                if split == "val":
                    t_idx, b_idx = torch.nonzero(labelled, as_tuple=True)
                    val_parts.append(
                        (projected[t_idx, b_idx], output.T[t_idx, b_idx], y[t_idx, b_idx], t_idx)
                    )
                    continue
                safe = torch.where(labelled, y, 0.0)
                out = output.T
                # Gradient and Gauss-Newton weight of each cell's loss in its output.
                prob = torch.sigmoid(out)
                slope = torch.where(binary[:, None], prob - safe, 2 * (out - safe))
                curve = torch.where(binary[:, None], prob * (1 - prob), torch.full_like(out, 2.0))
                mask = labelled.to(out.dtype)
                gradient += torch.einsum("tb,tbd->td", slope * mask, projected).double()
                weighted = projected * (curve * mask)[:, :, None]
                hessian += torch.bmm(weighted.transpose(1, 2), projected).double()
                count += mask.sum(dim=1).double()
    missing = [tasks[t] for t in np.flatnonzero(count.numpy() == 0)]
    if missing:
        raise ValueError(f"gradtag: task(s) without a training label: {missing[:5]}")
    hessian /= count[:, None, None]
    gradient /= count[:, None]
    feats, outs, labels, task_of = (torch.cat(parts) for parts in zip(*val_parts))
    order = torch.argsort(task_of, stable=True)
    return GradientStatistics(
        tasks=tasks,
        types=types,
        hessian=hessian,
        gradient=gradient,
        train_count=count,
        val_features=feats[order].double(),
        val_output=outs[order].double(),
        val_label=labels[order].double(),
        val_task=task_of[order].cpu(),
        dim=dim,
        seconds=time.perf_counter() - started,
    )


def estimate_subset_losses(
    stats: GradientStatistics,
    subsets: Sequence[Sequence[str]],
    ridge: float = 1.0,
    chunk: int = 1024,
) -> pd.DataFrame:
    """Each member's estimated validation loss in each subset's fine-tuned network: the long
    table ``subset`` (position in ``subsets``), ``task``, ``loss`` that
    :func:`pipeline.affinity.higher_order_affinity` reads. Vectorised: subsets are solved in
    batches of ``chunk`` (one batched d x d solve), members evaluated task by task in one
    matmul over every subset that holds the task."""
    position = {t: i for i, t in enumerate(stats.tasks)}
    unknown = sorted({t for s in subsets for t in s if t not in position})
    if unknown:
        raise ValueError(f"gradtag: unknown task(s) {unknown[:5]}")
    if ridge <= 0:
        raise ValueError(f"gradtag: ridge {ridge} must be positive")
    n_tasks, dim = len(stats.tasks), stats.dim
    members = [np.array([position[t] for t in s], dtype=np.int64) for s in subsets]
    width = max((len(m) for m in members), default=0)
    # Padded member table; index n_tasks points at a zero matrix / vector.
    padded = np.full((len(members), width), n_tasks, dtype=np.int64)
    for i, m in enumerate(members):
        padded[i, : len(m)] = m
    padded = torch.from_numpy(padded)
    # The solves in float32 (half the memory traffic of gathering d x d matrices, which is
    # what a solve of ~190,000 pairs costs) by Cholesky (SPD: Gauss-Newton plus the penalty).
    hessian = torch.cat([stats.hessian, torch.zeros(1, dim, dim, dtype=torch.float64)]).float()
    gradient = torch.cat([stats.gradient, torch.zeros(1, dim, dtype=torch.float64)]).float()
    penalty = ridge * float(torch.diagonal(stats.hessian, dim1=1, dim2=2).mean())
    eye = torch.eye(dim) * penalty
    steps = torch.empty(len(members), dim, dtype=torch.float64)
    for start in range(0, len(members), chunk):
        idx = padded[start : start + chunk]
        h = hessian[idx].sum(dim=1) + eye
        g = gradient[idx].sum(dim=1)
        factor = torch.linalg.cholesky(h)
        steps[start : start + chunk] = -torch.cholesky_solve(g[:, :, None], factor)[:, :, 0]
    # Evaluate: for each task, every subset holding it, on the task's validation cells.
    subset_of = np.repeat(np.arange(len(members)), [len(m) for m in members])
    task_of = np.concatenate(members) if members else np.zeros(0, dtype=np.int64)
    losses = np.empty(task_of.size)
    bounds = torch.searchsorted(stats.val_task, torch.arange(n_tasks + 1))
    binary_of = np.array([k == "binary" for k in stats.types])
    by_task = pd.Series(np.arange(task_of.size)).groupby(task_of).indices
    for t, entries in by_task.items():
        lo, hi = int(bounds[t]), int(bounds[t + 1])
        feats = stats.val_features[lo:hi]
        z = stats.val_output[lo:hi, None] + feats @ steps[subset_of[entries]].T  # (cells, k)
        binary = torch.full((hi - lo,), bool(binary_of[t]))
        losses[entries] = _cell_losses(z, stats.val_label[lo:hi], binary).mean(dim=0).numpy()
    return pd.DataFrame(
        {
            "subset": subset_of,
            "task": np.asarray(stats.tasks, dtype=object)[task_of],
            "loss": losses,
        }
    )


def relative_losses(stats: GradientStatistics, losses: pd.DataFrame, ridge: float) -> pd.Series:
    """Each row's estimated loss divided by its task's estimated loss fine-tuned alone (the
    single-task network's estimate), so every task weighs the same and a value below 1 means
    the subset's partners help."""
    singles = estimate_subset_losses(stats, [(t,) for t in stats.tasks], ridge)
    alone = dict(zip(singles["task"], singles["loss"]))
    return losses["loss"] / losses["task"].map(alone)


def gradtag_affinity(
    stats: GradientStatistics,
    subsets: Sequence[Sequence[str]],
    ridge: float = 1.0,
):
    """The higher-order affinity of the estimated subset losses, each relative to the task's
    estimate alone: Z(j -> i) = -mean over subsets holding i and j of i's relative loss
    (higher is better, TAG's convention)."""
    from .higher_order import higher_order_affinity

    losses = estimate_subset_losses(stats, subsets, ridge)
    frame = losses.assign(loss=relative_losses(stats, losses, ridge))
    return higher_order_affinity(frame, stats.tasks, require_all_pairs=False)


def all_pairs(tasks: Sequence[str]) -> list[tuple[str, str]]:
    from itertools import combinations

    return list(combinations(tuple(tasks), 2))


class GradTagRecorder(StepObserver):
    """A :class:`pipeline.training.StepObserver` that takes the gradient statistics of the
    network being trained at the end of each epoch in ``epochs`` (the meta-initialisation
    theta* at that point of the one training). It observes and never changes the training:
    no optimiser, RNG or parameter is touched (the statistics are computed under no_grad with
    their own generator), so the network's metrics are those of the same spec without it.

    Why an epoch and not only the end: on planted clusters a linearised fine-tune from the
    trained network (10 epochs) ranks partners of the same cluster *worse* (the trained trunk
    already holds every task's features; similar tasks then compete for the same directions),
    while from the first epoch's parameters it recovers the clusters exactly
    (tests/test_affinity_gradtag.py, bench/RESULTS_estimation.md)."""

    def __init__(self, trainer, epochs: Sequence[int] = (1,), dim: int = 128, seed: int = 0):
        self.trainer = trainer
        self.epochs = tuple(int(e) for e in epochs)
        self.dim, self.seed = int(dim), int(seed)
        self.statistics: dict[int, GradientStatistics] = {}

    def on_step(self, model, batch, losses) -> None:
        pass

    def end_epoch(self, epoch: int) -> None:
        if epoch in self.epochs:
            model = self.trainer.model
            was_training = model.training
            try:
                self.statistics[epoch] = gradient_statistics(
                    model, self.trainer, self.dim, self.seed
                )
            finally:
                model.train(was_training)

    def state_dict(self) -> dict:
        return {"statistics": dict(self.statistics)}

    def load_state_dict(self, state: dict) -> None:
        self.statistics = dict(state["statistics"])


def estimation_subsets(tasks: Sequence[str], size: int = 2, subsets: int | None = None,
                       seed: int = 0) -> list[tuple[str, ...]]:  # fmt: skip
    """The subsets whose losses are estimated: every pair (``size`` 2, the default: 190,000 at
    617 tasks, estimated in seconds), or ``subsets`` random ones of ``size`` tasks covering
    every pair (:func:`pipeline.affinity.sample_subsets`; default four times the fewest that
    can cover every pair)."""
    from .higher_order import sample_subsets

    tasks = tuple(tasks)
    if size == 2 and subsets is None:
        return all_pairs(tasks)
    if not 2 <= size <= len(tasks):
        raise ValueError(
            f"config key sweep.gradtag.size: {size} must be between 2 and the {len(tasks)} tasks"
        )
    per_subset = size * (size - 1) // 2
    pairs = len(tasks) * (len(tasks) - 1) // 2
    m = subsets if subsets is not None else max(len(tasks), 4 * -(-pairs // per_subset))
    return sample_subsets(tasks, size, int(m), seed=seed)


def meta_statistics(data, labels, spec: dict, epoch: int, dim: int, seed: int, device):
    """The all-in-one network of ``spec`` trained to the end of ``epoch`` and its gradient
    statistics there. Training stops at ``epoch``: every epoch up to it is the full training's
    own (same spec, same generator draws; the spec's epochs count changes nothing before; tested
    against the recorder inside the full training)."""
    from ..training import Trainer

    epochs = int(spec["training"]["epochs"])
    if not 1 <= epoch <= epochs:
        raise ValueError(
            f"config key sweep.gradtag.epoch: {epoch} must be between 1 and training.epochs "
            f"({epochs})"
        )
    short = {**spec, "training": {**spec["training"], "epochs": int(epoch)}}
    trainer = Trainer(data, labels, short, device)
    recorder = GradTagRecorder(trainer, [epoch], dim=dim, seed=seed)
    trainer.observer = recorder
    trainer.fit()
    return recorder.statistics[epoch]


def estimates_table(stats: GradientStatistics, subsets, ridge: float, provenance: dict):
    """The GRADTAG table (pipeline/schema.py) of ``subsets``' estimates."""
    import time

    import pyarrow as pa

    from ..schema import GRADTAG

    started = time.perf_counter()
    losses = estimate_subset_losses(stats, subsets, ridge)
    relative = relative_losses(stats, losses, ridge)
    seconds = time.perf_counter() - started
    n = len(losses)
    columns = {
        "subset": losses["subset"].to_numpy(),
        "members": [list(subsets[i]) for i in losses["subset"]],
        "task": losses["task"].astype(str).tolist(),
        "loss": losses["loss"].to_numpy(),
        "relative_loss": relative.to_numpy(),
        "dim": np.full(n, stats.dim, dtype=np.int32),
        "ridge": np.full(n, float(ridge)),
        "statistics_s": np.full(n, stats.seconds),
        "estimate_s": np.full(n, seconds),
    }
    for name, value in provenance.items():
        columns[name] = [value] * n
    return pa.table({name: columns[name] for name in GRADTAG.names}, schema=GRADTAG)


def affinity_from_tables(frames: Sequence[pd.DataFrame], tasks: Sequence[str]):
    """The higher-order affinity of estimate tables (one per seed): each (subset, member)'s
    relative loss averaged over the seeds, then Z(j -> i) = -mean over subsets holding both of
    i's relative loss. A pair in no subset gets the target's mean affinity."""
    from .higher_order import higher_order_affinity
    from .table import Affinity

    frame = pd.concat(frames, ignore_index=True)
    frame["key"] = frame["members"].map(lambda m: "\x1f".join(m))
    mean = frame.groupby(["key", "task"], as_index=False)["relative_loss"].mean()
    mean = mean.rename(columns={"key": "subset", "relative_loss": "loss"})
    affinity = higher_order_affinity(mean, tasks, require_all_pairs=False)
    matrix = affinity.matrix.copy()
    off = ~np.eye(len(tasks), dtype=bool)
    with np.errstate(invalid="ignore"):
        target_mean = np.nanmean(np.where(off, matrix, np.nan), axis=0)
    missing = np.isnan(matrix) & off
    matrix[missing] = np.broadcast_to(target_mean, matrix.shape)[missing]
    return Affinity(tuple(tasks), matrix)
