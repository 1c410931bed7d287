"""Train many same-shape networks as one: packed (vectorised) training.

A sweep's networks are small, so each step of one network is bound by per-op overhead, not
arithmetic. A *pack* steps P networks of one shape together: every parameter is stacked along a
leading network axis, the sparse first layer is one ``embedding_bag`` over the stacked weight rows
(each network's set-bit indices offset by ``p * in_features``), dense layers are ``baddbmm``, and
one fused Adam step updates every member (Adam is elementwise, so stacking changes nothing).

Each member stays the network it would be alone: it is built by its own :class:`Trainer` (own
generator: initialisation first, then each epoch's batch order, in the same order of calls as
alone), has its own masked per-task losses, weighting, optimiser state, divergence status,
checkpoint (in the format of a training alone, so either can resume the other) and METRICS table.
Only ``wall_time_s`` differs: a member records its share of the pack's time (pack time / members).

What packs is said by the method classes themselves (``packable`` and ``why_not_packed`` of the
architecture and weighting): ``hard_sharing`` with ``equal``, ``uncertainty`` or ``dwa``
weighting, over the MLP trunk. GradNorm, MTAN, AdaShare and conv or users' trunks train one
network at a time, and each such network's log says why.

A pack's members share one shape and training recipe (:func:`pack_key`), not their data's
identity: the networks of one table of your own pack like the built-in data's, while each
member's spec keeps its columns' content hashes (its reruns). The epoch's end is the
:class:`~pipeline.training.Trainer`'s own ``close_epoch``, member by member.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import torch
from torch import nn

from .failures import out_of_memory
from .metrics import masked_binary_losses
from .models.layers import BinaryInput, SparseBatch, SparseMatrix
from .training import EpochResult, Trainer, TrainingRun

# Cells per SIMD block that no CPU kernel exceeds (AVX-512: 16 floats, unrolled up to 4x).
SIMD_CELLS = 64


def unpackable_reason(spec: dict) -> str | None:
    """Why this network cannot be trained in a pack (one network at a time), or None."""
    from .models import ARCHITECTURES
    from .models.hard_sharing import STACKED_HEADS_FROM
    from .weighting import WEIGHTINGS

    trunk = spec["model"].get("trunk", "mlp")
    if trunk != "mlp":
        # Every dense task needs such a trunk too.
        return (
            f"model.trunk {trunk!r}: a pack stacks the MLP trunk's layers only; a conv or "
            "user's trunk would pack through torch.func vmap (grouped convolutions), which does "
            "not round like the network alone (bench/bench_conv_packing.py: outputs and "
            "gradients differ in the last bits), and a pack must train bitwise as alone"
        )
    architecture = ARCHITECTURES.get(spec["architecture"])
    if architecture is not None and not getattr(architecture, "packable", False):
        return f"architecture {spec['architecture']}: {architecture.why_not_packed}"
    weighting = WEIGHTINGS.get(spec["weighting"])
    if weighting is not None and not weighting.packable:
        return f"weighting {spec['weighting']}: {weighting.why_not_packed}"
    if len(spec["tasks"]) >= STACKED_HEADS_FROM:
        return (
            f"{len(spec['tasks'])} tasks: its heads run as one stacked matmul, which a pack "
            "would round like per-head matmuls"
        )
    return None


def packable(spec: dict) -> bool:
    """Can this network be trained in a pack (else: one network at a time)?"""
    return unpackable_reason(spec) is None


# Keys of a file dataset's spec that name what a network reads, not the shape it trains:
# the own target columns (``targets``) and their content hashes (``content.targets``).
_DATA_IDENTITY = ("targets",)


def pack_key(spec: dict) -> str:
    """Networks with equal keys have one shape and one training recipe and can share a pack:
    everything in the spec but the task names, the seed (each member has its own generator)
    and which target columns of a file dataset it reads (their content hashes stay in each
    member's spec, for reruns), plus the number of tasks and, for a file dataset, each task
    position's type. The features (their content hash) stay in the key: a pack reads one
    feature matrix."""
    rest = {k: v for k, v in spec.items() if k not in ("tasks", "seed")}
    dataset = dict(spec["dataset"])
    targets = dataset.get("targets")
    if isinstance(targets, dict):
        dataset = {k: v for k, v in dataset.items() if k not in _DATA_IDENTITY}
        dataset["target_types"] = [json.dumps(targets.get(t)) for t in spec["tasks"]]
        content = dataset.get("content")
        if isinstance(content, dict):
            dataset["content"] = {k: v for k, v in content.items() if k not in _DATA_IDENTITY}
    rest["dataset"] = dataset
    return json.dumps({**rest, "n_tasks": len(spec["tasks"])}, sort_keys=True)


class PackMemoryError(RuntimeError):
    """A pack did not fit in memory even after splitting down to one network."""


def _packed_take(x: SparseMatrix, batches: torch.Tensor, in_features: int) -> SparseBatch:
    """The (P, B) row ids of P networks' batches as one SparseBatch over a stacked
    (P * in_features, out) weight: member p's set-bit indices are offset by p * in_features."""
    flat = x.take(batches.reshape(-1))
    starts = x.indptr[batches]
    counts = (x.indptr[batches + 1] - starts).sum(dim=1)
    members = torch.arange(batches.shape[0], device=batches.device)
    shift = torch.repeat_interleave(members * in_features, counts)
    return SparseBatch(flat.indices + shift, flat.offsets)


def _batched_linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``F.linear`` of P members at once: (P, B, in) x (P, out, in) + (P, out)."""
    if weight.shape[1] == 1:
        # Alone, a one-output layer is a matrix-vector product (addmv); W @ h^T rounds like it,
        # h @ W^T does not.
        return torch.baddbmm(bias.unsqueeze(2), weight, h.transpose(1, 2)).transpose(1, 2)
    return torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))


_exact_cache: dict[tuple, bool] = {}
_exact_lock = threading.Lock()


def _batched_is_exact(
    p: int, rows: int, in_features: int, out_features: int, device: torch.device, dtype
) -> bool:
    """Does the batched product give every member bitwise its own ``F.linear`` (forward and
    backward) at this shape? CPU BLAS picks kernels by size and alignment (tiny or odd shapes
    round differently in bmm than in addmm), so it is probed once per shape rather than
    assumed; where it differs, the pack runs each member's own op for that layer."""
    # Member blocks past 16 repeat the first 16's alignments (4-byte offsets mod 64 bytes).
    p = min(p, 16)
    key = (p, rows, in_features, out_features, str(device), dtype)
    with _exact_lock:
        if key in _exact_cache:
            return _exact_cache[key]
    g = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    h, w, b = rand(p, rows, in_features), rand(p, out_features, in_features), rand(p, out_features)
    grad = rand(p, rows, out_features)
    with torch.enable_grad():  # also when first met in a no-grad evaluation
        exact = _probe(p, h, w, b, grad)
    with _exact_lock:
        _exact_cache[key] = exact
    return exact


def _probe(p: int, h, w, b, grad) -> bool:
    hp, wp, bp = (t.clone().requires_grad_() for t in (h, w, b))
    out = _batched_linear(hp, wp, bp)
    out.backward(grad)
    exact = True
    for m in range(p):
        ha, wa, ba = (t[m].clone().requires_grad_() for t in (h, w, b))
        alone = nn.functional.linear(ha, wa, ba)
        alone.backward(grad[m].clone())  # alone, the gradient is a buffer of its own
        exact = exact and all(
            torch.equal(x, y)
            for x, y in ((alone, out[m]), (ha.grad, hp.grad[m]), (wa.grad, wp.grad[m]),
                         (ba.grad, bp.grad[m]))
        )  # fmt: skip
    return exact


class _PackedBinaryInput(torch.autograd.Function):
    """Member p's rows of a stacked (P, in, out) weight summed per bag, for P networks' batches
    in one ``embedding_bag`` call. The forward is bitwise the members' own; the backward runs
    ``embedding_bag``'s own backward once per member on that member's indices, because one call
    over all members accumulates each weight row's contributions in another order (last-bit
    differences that grow over training)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, indices: torch.Tensor, offsets: torch.Tensor, n: int):
        p, in_features, out_features = weight.shape
        out, offset2bag, bag_size, max_indices = torch.ops.aten._embedding_bag(
            weight.reshape(-1, out_features), indices, offsets, False, 0, False, None, False, -1
        )
        ctx.save_for_backward(indices, offsets, offset2bag, bag_size, max_indices)
        ctx.shape = (p, in_features, n)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        indices, offsets, offset2bag, bag_size, max_indices = ctx.saved_tensors
        p, in_features, n = ctx.shape
        bounds = torch.cat([offsets[::n], offsets.new_tensor([indices.numel()])]).tolist()
        grads = []
        for m in range(p):
            lo, hi = bounds[m], bounds[m + 1]
            rows = slice(m * n, (m + 1) * n)
            grads.append(
                torch.ops.aten._embedding_bag_backward(
                    grad[rows].clone(),  # aligned as alone's (PackedHardSharing.release)
                    indices[lo:hi] - m * in_features,
                    offsets[rows] - lo,
                    offset2bag,
                    bag_size[rows],
                    max_indices[rows],
                    in_features,
                    False,
                    0,
                    False,
                    None,
                    -1,
                )  # fmt: skip
            )
        return torch.stack(grads), None, None, None


class _OwnGrad(torch.autograd.Function):
    """Identity whose backward hands the gradient on in memory of its own, as alone, where
    the next op's backward (relu's) allocates it: a member's slice of a stacked gradient
    starts at an unaligned address when rows x width is not a multiple of 16 floats."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _own(grad)


def _own(t: torch.Tensor) -> torch.Tensor:
    """``t`` in a buffer of its own (freshly allocated, so aligned as alone's)."""
    return t.clone(memory_format=torch.contiguous_format)


class PackedHardSharing(nn.Module):
    """P HardSharing networks of one shape as stacked parameters. The members' own modules keep
    working (evaluation, state_dict, checkpoints): their parameters become views of the stacked
    ones, so the members always hold the pack's current weights without copies."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.n = len(members)
        first = members[0]
        self.binary = isinstance(first.trunk.layers[0], BinaryInput)
        self.names = [name for name, _ in first.named_parameters()]
        self.stacked = nn.ParameterList()
        for name in self.names:
            per_member = [dict(m.named_parameters())[name] for m in members]
            self.stacked.append(nn.Parameter(torch.stack([p.detach() for p in per_member])))
        self.by_name = dict(zip(self.names, self.stacked))
        self.members = list(members)
        for p in range(self.n):
            self.attach(p)
        self.trunk_depth = len(first.trunk.layers)
        self.head_depths = [len(head.layers) for head in first.heads]

    def attach(self, p: int) -> None:
        """Member ``p``'s parameters become views of the stack (the pack's steps update them)."""
        for name, param in self.members[p].named_parameters():
            param.data = self.by_name[name].data[p]

    def release(self, p: int) -> None:
        """Member ``p``'s parameters get memory of their own, holding the stack's values: a
        view starts at a member-dependent, often unaligned address (a 21-weight head: 84 bytes
        per member), and CPU BLAS rounds by alignment (measured on an AMD EPYC: 82 of 900
        ``F.linear`` forwards differ in a last bit on an unaligned weight)."""
        for name, param in self.members[p].named_parameters():
            param.data = self.by_name[name].data[p].clone()

    def _dense(self, prefix: str, h: torch.Tensor) -> torch.Tensor:
        weight, bias = self.by_name[f"{prefix}.weight"], self.by_name[f"{prefix}.bias"]
        if not _batched_is_exact(weight.shape[0], h.shape[1], weight.shape[2], weight.shape[1],
                                 h.device, h.dtype):  # fmt: skip
            # Each member's own op on its own (aligned) copies, as alone (see release).
            # unbind, not [p]: one backward op for all members (a select's backward fills a
            # whole stack-sized zero tensor per member).
            return torch.stack([
                _OwnGrad.apply(nn.functional.linear(_own(hp), _own(w), _own(b)))
                for hp, w, b in zip(h.unbind(0), weight.unbind(0), bias.unbind(0))
            ])  # fmt: skip
        return _batched_linear(h, weight, bias)

    def _heads_batched(self, h: torch.Tensor) -> bool:
        """Is every head layer's batched product bitwise each member's own at this batch?"""
        n, rows = h.shape[0], h.shape[1]
        return all(
            _batched_is_exact(n, rows, w.shape[2], w.shape[1], h.device, h.dtype)
            for j, depth in enumerate(self.head_depths)
            for w in [self.by_name[f"heads.{j}.layers.{k}.weight"] for k in range(depth)]
        )

    def _member_heads(self, h: torch.Tensor) -> list[list[torch.Tensor]]:
        """Each member's heads on its own copies, as alone: per member, each task's (B, out)
        output in a buffer of its own, so that the loss's backward hands each head its
        gradient in alone's layout (a column of the member's own (B, tasks) gradient)."""
        layers = {
            (j, k): (self.by_name[f"heads.{j}.layers.{k}.weight"].unbind(0),
                     self.by_name[f"heads.{j}.layers.{k}.bias"].unbind(0))
            for j, depth in enumerate(self.head_depths)
            for k in range(depth)
        }  # fmt: skip
        per_member = []
        for p, hp in enumerate(h.unbind(0)):
            own, outputs = _own(hp), []
            for j, depth in enumerate(self.head_depths):
                o = own
                for k in range(depth):
                    weights, biases = layers[j, k]
                    o = nn.functional.linear(o, _own(weights[p]), _own(biases[p]))
                    if k < depth - 1:
                        o = torch.relu(o)
                outputs.append(o)
            per_member.append(outputs)
        return per_member

    def forward(self, x, batches: torch.Tensor) -> list[torch.Tensor] | list[list[torch.Tensor]]:
        """Each task's (P, B, out) outputs for the (P, B) row ids ``batches``; or, where the
        batched heads would not be bitwise the members' own, each member's list of (B, out)
        outputs (:meth:`_member_heads`)."""
        n, b = batches.shape
        if self.binary:
            weight = self.by_name["trunk.layers.0.weight"]
            bias = self.by_name["trunk.layers.0.bias"]
            sparse = _packed_take(x, batches, weight.shape[1])
            out = _PackedBinaryInput.apply(weight, sparse.indices, sparse.offsets, b)
            h = out.view(n, b, -1) + bias.unsqueeze(1)
        else:
            h = self._dense("trunk.layers.0", x[batches])
        h = torch.relu(h)
        for k in range(1, self.trunk_depth):
            h = torch.relu(self._dense(f"trunk.layers.{k}", h))
        if not self._heads_batched(h):
            return self._member_heads(h)
        outputs = []
        for j, depth in enumerate(self.head_depths):
            o = h
            for k in range(depth):
                o = self._dense(f"heads.{j}.layers.{k}", o)
                if k < depth - 1:
                    o = torch.relu(o)
            outputs.append(o)
        return outputs


@dataclass
class _Member:
    """One network of a pack: its trainer and its training state (a training alone's)."""

    trainer: Trainer
    run: TrainingRun


class PackedTrainer:
    """Trains the networks of ``trainers`` (same :func:`pack_key`) as one pack; ``fit`` returns
    each member's METRICS table, equal to what ``trainer.fit()`` alone returns."""

    def __init__(self, trainers: Sequence[Trainer]) -> None:
        if not trainers:
            raise ValueError("an empty pack")
        for t in trainers:
            reason = unpackable_reason(t.spec)
            if reason is not None:
                raise ValueError(f"{t.network.name} is not packed: {reason}")
        if len({pack_key(t.spec) for t in trainers}) != 1:
            raise ValueError("a pack's networks must have one shape and training recipe")
        self.trainers = list(trainers)
        self.device = trainers[0].device

    def fit(self) -> list[pa.Table]:
        members = [_Member(t, t.start()) for t in self.trainers]
        tables: dict[int, pa.Table] = {}
        # Members resumed at different epochs have different Adam step counts, and tables of
        # one's own may give a multiclass task other class counts: one sub-pack each.
        groups: dict[tuple, list[int]] = {}
        for i, m in enumerate(members):
            key = (m.run.first_epoch, tuple(m.trainer.output_dims))
            groups.setdefault(key, []).append(i)
        for indices in groups.values():
            self._fit_group([members[i] for i in indices])
        for i, m in enumerate(members):
            tables[i] = m.trainer.finish(m.run)
        return [tables[i] for i in range(len(members))]

    # ---- the packed loop -------------------------------------------------------------------
    def _fit_group(self, members: list[_Member]) -> None:
        lead = members[0].trainer
        packed = PackedHardSharing([m.run.model for m in members]).to(self.device)
        # One fused Adam over every member's own parameter tensors (views of the stacked
        # ones), not over the stacked tensors: the CPU kernel splits each tensor into SIMD
        # blocks and a scalar tail, so only a member's own tensor rounds exactly as alone. Its
        # state per parameter is the member's own (checkpoints), and a diverged member's
        # parameters get no gradient, so Adam leaves them alone.
        params = [p for m in members for p in self._own_parameters(m)]
        optimizer = torch.optim.Adam(params, lr=lead.lr, weight_decay=lead.weight_decay, fused=True)
        for m in members:
            for param in self._own_parameters(m):
                if param in m.run.optimizer.state:
                    optimizer.state[param] = m.run.optimizer.state[param]
        started = time.perf_counter()
        first_epoch = members[0].run.first_epoch
        targets = [m.trainer.fused_targets for m in members]
        fused = all(t is not None for t in targets)
        if fused:
            safe_y = torch.stack([t.safe_y for t in targets])
            mask = torch.stack([t.mask for t in targets])
        member_ids = torch.arange(len(members), device=self.device)
        n = len(members)

        def elapsed(m: _Member) -> float:
            # A member's share of the pack's time, so summed wall_time_s stays the CPU spent.
            return m.run.elapsed0 + (time.perf_counter() - started) / n

        for epoch in range(first_epoch, lead.epochs + 1):
            active = [not m.run.done for m in members]
            if not any(active):
                break
            for m in members:
                m.run.model.train()
            per_member = [m.trainer.epoch_batches() for m in members]
            n_steps = len(per_member[0])
            sums = torch.zeros(n, len(lead.tasks), device=self.device)
            steps = [0] * n
            results: list[EpochResult | None] = [None] * n
            learned: list[dict | None] = [None] * n
            alive = torch.tensor(active, device=self.device)
            for s in range(n_steps):
                batches = torch.stack([b[s] for b in per_member])
                outputs = packed(lead.inputs.x, batches)
                if isinstance(outputs[0], list):  # each member's own heads: its own loss
                    losses = torch.stack([
                        m.trainer.losses_from_outputs(outputs[p], batches[p])
                        for p, m in enumerate(members)
                    ])  # fmt: skip
                elif fused:
                    # Elementwise kernels with exp/log (the loss's sigmoid) round differently
                    # in their SIMD body and scalar tail; stacked, a member's cells stay in the
                    # same kind of block as alone only if its block is a whole number of SIMD
                    # blocks, else each member's loss is its own call. Either way the logits
                    # are one (P, B, tasks) tensor, so gradients reach the heads in alone's
                    # layout.
                    logits = torch.cat(outputs, dim=2)
                    if (batches.shape[1] * len(lead.tasks)) % SIMD_CELLS == 0:
                        losses = masked_binary_losses(
                            logits,
                            safe_y[member_ids[:, None], batches],
                            mask[member_ids[:, None], batches],
                        )
                    else:
                        losses = torch.stack([
                            masked_binary_losses(logits[p], safe_y[p][rows], mask[p][rows])
                            for p, rows in enumerate(batches)
                        ])  # fmt: skip
                else:
                    losses = torch.stack([
                        m.trainer.losses_from_outputs([o[p] for o in outputs], batches[p])
                        for p, m in enumerate(members)
                    ])  # fmt: skip
                totals = self._combine(members, losses)
                finite = torch.isfinite(totals).tolist()
                for p, m in enumerate(members):
                    if results[p] is None and active[p] and not finite[p]:
                        # Diverged: its epoch stops here, as alone; the others go on.
                        results[p] = EpochResult(sums[p].clone(), steps[p], diverged=True)
                        learned[p] = {**m.run.weighting.recorded(), **m.run.model.recorded()}
                        active[p] = False
                        alive[p] = False
                if not any(active):
                    break
                optimizer.zero_grad(set_to_none=True)
                for stacked in packed.parameters():
                    stacked.grad = None
                torch.where(alive, totals, torch.zeros_like(totals)).sum().backward()
                for p, m in enumerate(members):
                    if active[p]:
                        for name, param in m.run.model.named_parameters():
                            param.grad = packed.by_name[name].grad[p]
                    else:
                        for param in m.run.weighting.parameters():
                            param.grad = None
                optimizer.step()
                for p, m in enumerate(members):
                    if active[p]:
                        m.run.weighting.after_step()
                sums += torch.where(alive[:, None], losses.detach(), torch.zeros_like(losses))
                for p in range(n):
                    steps[p] += int(active[p])
            # Each member evaluates alone (Trainer.close_epoch): one packed forward over a
            # split's rows is bitwise equal but measured 1.9x slower on CPU (28 members x
            # 6,264 rows x 128 activations leave the cache; bench/bench_pack_parts.py).
            for p, m in enumerate(members):
                if m.run.done:
                    continue
                # The member's own optimiser holds the pack's state (its checkpoint format).
                for param in self._own_parameters(m):
                    if param in optimizer.state:
                        m.run.optimizer.state[param] = optimizer.state[param]
                result = results[p] or EpochResult(sums[p], steps[p], diverged=False)
                # Evaluated, checkpointed and (when done) kept on weights in memory of their
                # own, as alone: a view into the stack starts at a member-dependent address,
                # and CPU BLAS kernels round by alignment (README "Packed training").
                packed.release(p)
                if not m.trainer.close_epoch(m.run, epoch, result, elapsed(m), learned[p]):
                    packed.attach(p)

    @staticmethod
    def _combine(members: list[_Member], losses: torch.Tensor) -> torch.Tensor:
        """Each member's combined loss, (P,). Equal weighting's sum has gradient one per task
        whatever its summation order, so it is one reduction; the others are the members' own
        ``combine`` (elementwise gradients: exact)."""
        if all(m.trainer.spec["weighting"] == "equal" for m in members):
            return losses.sum(dim=1)
        return torch.stack(
            [m.run.weighting.combine(losses[p], m.run.model) for p, m in enumerate(members)]
        )

    @staticmethod
    def _own_parameters(m: _Member) -> list[nn.Parameter]:
        return list(m.run.model.parameters()) + list(m.run.weighting.parameters())


def train_pack(
    trainers: Sequence[Trainer], log: Callable[[str], None] = lambda line: None
) -> list[pa.Table]:
    """Train ``trainers`` packed; if the pack does not fit in memory, split it in halves and
    retry (a one-network pack that does not fit raises :class:`PackMemoryError`)."""
    try:
        return PackedTrainer(trainers).fit()
    except (torch.OutOfMemoryError, RuntimeError, MemoryError) as err:
        if not out_of_memory(err):
            raise
        if len(trainers) == 1:
            raise PackMemoryError(
                f"a pack of 1 network ({trainers[0].network.name}) does not fit in memory on "
                f"{trainers[0].device}: {err}"
            ) from err
        half = len(trainers) // 2
        log(f"pack of {len(trainers)} networks out of memory ({err}); retrying as two packs")
        fresh = [t.fresh() for t in trainers]
        return train_pack(fresh[:half], log) + train_pack(fresh[half:], log)


# ---- packing the jobs Snakemake is about to run -----------------------------------------------
@dataclass(frozen=True)
class TrainJob:
    """One network's training as the workflow sees it: its spec and files."""

    spec: dict = field(hash=False, compare=False)
    output: str
    log: str
    checkpoint: str | None
    split: str
    # The network's TEST_LOSSES file (pipeline.sample_losses); None: not written.
    samples: str | None = None


def group_pending(group: Sequence[dict]) -> Callable[[], list[TrainJob]]:
    """``pending()`` for the members of one cluster group job (their input, output, params and
    log, as a ``run:`` block sees them): the group's trainings whose metrics are not written
    yet. Snakemake removed every member's stale output before the group started."""

    def pending() -> list[TrainJob]:
        return [
            TrainJob(
                m["params"]["spec"],
                m["output"]["metrics"],
                m["log"][0],
                m["params"].get("checkpoint"),
                m["input"]["split"],
                m["output"].get("samples"),
            )
            for m in group
            if "metrics" in m["output"]
            and m["params"].get("tag") is None
            and not os.path.exists(m["output"]["metrics"])
        ]

    return pending


@dataclass
class _Slot:
    job: TrainJob
    pack: _Pack
    done: threading.Event = field(default_factory=threading.Event)
    table: pa.Table | None = None
    samples: pa.Table | None = None
    error: BaseException | None = None
    lines: list[str] = field(default_factory=list)


@dataclass
class _Pack:
    key: str
    slots: list[_Slot] = field(default_factory=list)
    started: bool = False


class PackScheduler:
    """Packs the trainings of one process's Snakemake jobs (local profile: jobs are threads).

    Snakemake still runs one job per network (its own output, log, benchmark and rerun
    decision). The first job to arrive groups every training the DAG still has to run into
    packs (same :func:`pack_key`, at most ``size`` each); a job then trains its own pack, or, if
    another job's thread is training it, trains any other unstarted pack while it waits (no core
    idles), and finally writes its own network's results. A pack's failure fails its members'
    jobs with the error."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.slots: dict[str, _Slot] = {}
        self.queue: list[_Pack] = []

    def _plan(self, jobs: Sequence[TrainJob], size: int) -> None:
        groups: dict[str, dict[str, TrainJob]] = {}
        for job in jobs:
            if job.output not in self.slots and packable(job.spec):
                groups.setdefault(pack_key(job.spec), {})[job.output] = job
        for key, by_output in groups.items():
            members = list(by_output.values())
            # Even packs: 70 networks at 32 make 24+23+23, not 32+32+6.
            n_packs = -(-len(members) // size)
            for i in range(n_packs):
                pack = _Pack(key)
                for job in members[i::n_packs]:
                    slot = _Slot(job, pack)
                    pack.slots.append(slot)
                    self.slots[job.output] = slot
                self.queue.append(pack)

    def _claim(self, own: _Pack) -> _Pack | None:
        with self.lock:
            if not own.started:
                pack = own
            else:
                pack = next((p for p in self.queue if not p.started), None)
            if pack is not None:
                pack.started = True
                self.queue.remove(pack)
            return pack

    def run(
        self,
        job: TrainJob,
        pending: Callable[[], Sequence[TrainJob]],
        size: int,
        train: Callable[[list[_Slot]], None],
    ) -> _Slot:
        """The finished slot of ``job`` (trained in some pack, by this thread or another)."""
        with self.lock:
            if job.output not in self.slots:
                self._plan([job, *pending()], size)
            slot = self.slots[job.output]
        while not slot.done.is_set():
            pack = self._claim(slot.pack)
            if pack is None:
                slot.done.wait()
                break
            try:
                train(pack.slots)
            except BaseException as err:  # every member's job reports it
                for member in pack.slots:
                    member.error = err
            finally:
                for member in pack.slots:
                    member.done.set()
        with self.lock:
            self.slots.pop(job.output, None)
        return slot


SCHEDULER = PackScheduler()


class PackFailed(RuntimeError):
    """The pack a network was trained in raised an ``Exception`` (its ``__cause__``); the
    caller retrains the network alone. Anything else (Ctrl-C, exit) is re-raised as itself."""


def run_packed_job(input: dict, output: dict, params: dict, log: list, pending, size: int) -> None:
    """The ``train`` job body when packing: this network is trained in a pack of the trainings
    ``pending()`` lists (see :class:`PackScheduler`); its own files are written as alone."""
    from .datasets import load_dataset
    from .schema import METRICS, write_table
    from .split import read_split
    from .training import Checkpointer, resolve_device

    device = resolve_device()
    from .sample_losses import final_sample_losses, write_sample_losses

    job = TrainJob(
        params["spec"], output["metrics"], log[0], params.get("checkpoint"), input["split"],
        output.get("samples"),
    )  # fmt: skip

    def train(slots: list[_Slot]) -> None:
        trainers, labels = [], {}
        for slot in slots:
            spec = slot.job.spec
            data = load_dataset(spec["dataset"])
            if slot.job.split not in labels:
                labels[slot.job.split] = read_split(slot.job.split, data.n_rows)
            trainer = Trainer(
                data, labels[slot.job.split], spec, device, slot.lines.append,
                Checkpointer(slot.job.checkpoint),
            )  # fmt: skip
            slot.lines.append(
                f"network {trainer.network.name} on {device}, in a pack of {len(slots)}"
            )
            trainers.append(trainer)
        tables = train_pack(trainers, slots[0].lines.append)
        for slot, trainer, table in zip(slots, trainers, tables):
            slot.table = table
            if slot.job.samples is not None:
                slot.samples = final_sample_losses(trainer)

    slot = SCHEDULER.run(job, pending, size, train)
    with open(log[0], "w") as log_file:
        log_file.write("".join(line + "\n" for line in slot.lines))
        if slot.error is not None:
            log_file.write(f"pack failed: {slot.error!r}\n")
    if slot.error is not None:
        if not isinstance(slot.error, Exception):
            raise slot.error  # Ctrl-C or exit in the pack's thread: stop, retrain nothing
        raise PackFailed(f"the pack training {job.output} failed: {slot.error}") from slot.error
    if job.samples is not None:
        write_sample_losses(slot.samples, job.samples)
    write_table(slot.table, output["metrics"], METRICS)
    Checkpointer(job.checkpoint).remove()
