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

Packed: ``hard_sharing`` with ``equal``, ``uncertainty`` or ``dwa`` weighting. GradNorm (per-task
gradient norms of each member's shared layer), MTAN and AdaShare train one network at a time.
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

from .metrics import masked_binary_losses
from .models.layers import BinaryInput, SparseBatch, SparseMatrix
from .training import EpochResult, Trainer, _log_line

PACKED_ARCHITECTURES = frozenset({"hard_sharing"})
PACKED_WEIGHTINGS = frozenset({"equal", "uncertainty", "dwa"})
# Automatic pack size: past ~32 members the per-op overhead is already amortised (a 1024x128
# trunk of 32 networks is ~4 M weights per step) and bigger packs only delay the first results.
AUTO_PACK = 32
# Cells per SIMD block that no CPU kernel exceeds (AVX-512: 16 floats, unrolled up to 4x).
SIMD_CELLS = 64


def packable(spec: dict) -> bool:
    """Can this network be trained in a pack (else: one network at a time)? Not a network
    whose heads run as one stacked matmul (many tasks): a pack rounds like per-head matmuls,
    nor one over any trunk but the MLP (the pack stacks MLP layers only)."""
    from .models.hard_sharing import STACKED_HEADS_FROM

    return (
        # Conv and user trunks (and so every dense task, which needs one): one at a time.
        spec["model"].get("trunk", "mlp") == "mlp"
        and spec["architecture"] in PACKED_ARCHITECTURES
        and spec["weighting"] in PACKED_WEIGHTINGS
        and len(spec["tasks"]) < STACKED_HEADS_FROM
    )


def pack_key(spec: dict) -> str:
    """Networks with equal keys have one shape and one training recipe and can share a pack:
    everything in the spec but the task names and the seed (each member has its own
    generator), plus the number of tasks."""
    rest = {k: v for k, v in spec.items() if k not in ("tasks", "seed")}
    return json.dumps({**rest, "n_tasks": len(spec["tasks"])}, sort_keys=True)


def pack_size(setting: str | int | bool) -> int:
    """Most members per pack for ``training.pack`` (``auto``, ``off`` (YAML: false) or a
    number); 1 trains one network per job."""
    if setting in ("off", False):
        return 1
    if setting in ("auto", True):
        return AUTO_PACK
    return max(1, int(setting))


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
    hp, wp, bp = (t.clone().requires_grad_() for t in (h, w, b))
    out = _batched_linear(hp, wp, bp)
    out.backward(grad)
    exact = True
    for m in range(p):
        ha, wa, ba = (t[m].clone().requires_grad_() for t in (h, w, b))
        alone = nn.functional.linear(ha, wa, ba)
        alone.backward(grad[m])
        exact = exact and all(
            torch.equal(x, y)
            for x, y in ((alone, out[m]), (ha.grad, hp.grad[m]), (wa.grad, wp.grad[m]),
                         (ba.grad, bp.grad[m]))
        )  # fmt: skip
    with _exact_lock:
        _exact_cache[key] = exact
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
                    grad[rows],
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
        for p, member in enumerate(members):
            for name, param in member.named_parameters():
                param.data = self.by_name[name].data[p]
        self.trunk_depth = len(first.trunk.layers)
        self.head_depths = [len(head.layers) for head in first.heads]

    def _dense(self, prefix: str, h: torch.Tensor) -> torch.Tensor:
        weight, bias = self.by_name[f"{prefix}.weight"], self.by_name[f"{prefix}.bias"]
        if not _batched_is_exact(weight.shape[0], h.shape[1], weight.shape[2], weight.shape[1],
                                 h.device, h.dtype):  # fmt: skip
            return torch.stack([
                nn.functional.linear(h[p], weight[p], bias[p]) for p in range(weight.shape[0])
            ])  # fmt: skip
        return _batched_linear(h, weight, bias)

    def forward(self, x, batches: torch.Tensor) -> list[torch.Tensor]:
        """Each task's (P, B, out) outputs for the (P, B) row ids ``batches``."""
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
    """One network of a pack and its training state (what ``Trainer.fit`` keeps in locals)."""

    trainer: Trainer
    model: nn.Module
    weighting: nn.Module
    optimizer: torch.optim.Optimizer  # the member's own Adam: its checkpoint format
    n_labelled: dict
    macs: int
    cost: float
    epoch_rows: list[dict] = field(default_factory=list)
    first_epoch: int = 1
    elapsed0: float = 0.0
    diverged_at: int | None = None
    done: bool = False


class PackedTrainer:
    """Trains the networks of ``trainers`` (same :func:`pack_key`) as one pack; ``fit`` returns
    each member's METRICS table, equal to what ``trainer.fit()`` alone returns."""

    def __init__(self, trainers: Sequence[Trainer]) -> None:
        if not trainers:
            raise ValueError("an empty pack")
        for t in trainers:
            if not packable(t.spec):
                raise ValueError(f"{t.network.name}: {t.spec['architecture']} x "
                                 f"{t.spec['weighting']} is not packed")  # fmt: skip
        keys = {pack_key(t.spec) for t in trainers}
        if len(keys) != 1 or len({tuple(t.output_dims) for t in trainers}) != 1:
            raise ValueError("a pack's networks must have one shape and training recipe")
        self.trainers = list(trainers)
        self.device = trainers[0].device

    # ---- set-up ----------------------------------------------------------------------------
    def _member(self, t: Trainer) -> _Member:
        model, weighting = t.build_model(), t.new_weighting()
        n_labelled = t.labelled_counts()
        resumed = t.checkpoint.load(t.state_key)
        if resumed is not None:
            model.load_state_dict(resumed["model"])
        macs, cost = t.model_cost(model)
        optimizer = t.new_optimizer(model, weighting)
        m = _Member(t, model, weighting, optimizer, n_labelled, macs, cost)
        if resumed is not None:
            m.epoch_rows, m.first_epoch = t.resume(resumed, optimizer, weighting)
            m.elapsed0 = resumed["elapsed"]
        return m

    def fit(self) -> list[pa.Table]:
        members = [self._member(t) for t in self.trainers]
        tables: dict[int, pa.Table] = {}
        # Members resumed at different epochs have different Adam step counts: one sub-pack each.
        by_start: dict[int, list[int]] = {}
        for i, m in enumerate(members):
            by_start.setdefault(m.first_epoch, []).append(i)
        for indices in by_start.values():
            group = [members[i] for i in indices]
            for i, table in zip(indices, self._fit_group(group)):
                tables[i] = table
        return [tables[i] for i in range(len(members))]

    # ---- the packed loop -------------------------------------------------------------------
    def _fit_group(self, members: list[_Member]) -> list[pa.Table]:
        lead = members[0].trainer
        packed = PackedHardSharing([m.model for m in members]).to(self.device)
        # One fused Adam over every member's own parameter tensors (views of the stacked
        # ones), not over the stacked tensors: the CPU kernel splits each tensor into SIMD
        # blocks and a scalar tail, so only a member's own tensor rounds exactly as alone. Its
        # state per parameter is the member's own (checkpoints), and a diverged member's
        # parameters get no gradient, so Adam leaves them alone.
        params = [p for m in members for p in self._own_parameters(m)]
        optimizer = torch.optim.Adam(params, lr=lead.lr, weight_decay=lead.weight_decay, fused=True)
        for m in members:
            for param in self._own_parameters(m):
                if param in m.optimizer.state:
                    optimizer.state[param] = m.optimizer.state[param]
        started = time.perf_counter()
        first_epoch = members[0].first_epoch
        fused = all(m.trainer.inputs is not None and m.trainer._fused is not None for m in members)
        if fused:
            safe_y = torch.stack([m.trainer._fused[0] for m in members])
            mask = torch.stack([m.trainer._fused[1] for m in members])
        member_ids = torch.arange(len(members), device=self.device)
        n = len(members)

        def elapsed(m: _Member) -> float:
            # A member's share of the pack's time, so summed wall_time_s stays the CPU spent.
            return m.elapsed0 + (time.perf_counter() - started) / n

        for epoch in range(first_epoch, lead.epochs + 1):
            active = [not m.done for m in members]
            if not any(active):
                break
            for m in members:
                m.model.train()
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
                # Elementwise kernels with exp/log (the loss's sigmoid) round differently in
                # their SIMD body and scalar tail; stacked, a member's cells stay in the same
                # kind of block as alone only if its block is a whole number of SIMD blocks,
                # else each member's loss is its own call. Either way the logits are one
                # (P, B, tasks) tensor, so gradients reach the heads in alone's layout.
                if fused:
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
                        learned[p] = {**m.weighting.recorded(), **m.model.recorded()}
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
                        for name, param in m.model.named_parameters():
                            param.grad = packed.by_name[name].grad[p]
                    else:
                        for param in m.weighting.parameters():
                            param.grad = None
                optimizer.step()
                for p, m in enumerate(members):
                    if active[p]:
                        m.weighting.after_step()
                sums += torch.where(alive[:, None], losses.detach(), torch.zeros_like(losses))
                for p in range(n):
                    steps[p] += int(active[p])
            for p, m in enumerate(members):
                if m.done:
                    continue
                result = results[p] or EpochResult(sums[p], steps[p], diverged=False)
                if result.diverged:
                    m.diverged_at = epoch
                else:
                    learned[p] = {**m.weighting.recorded(), **m.model.recorded()}
                    m.weighting.end_epoch(epoch, result.mean_losses())
                t = m.trainer
                evaluation = t.evaluate(m.model, m.diverged_at is not None)
                now = elapsed(m)
                m.epoch_rows += t.evaluation_rows(evaluation, epoch, now, m.n_labelled)
                m.epoch_rows += t.learned_rows(learned[p], epoch, now, m.n_labelled)
                t.log(_log_line(epoch, t.epochs, t.tasks, evaluation, now, m.diverged_at))
                if m.diverged_at is not None:
                    m.done = True
            if any(m.trainer.checkpoint.due(final=epoch == lead.epochs) for m in members):
                self._save_checkpoints(members, optimizer, epoch, elapsed)
        return [
            m.trainer.table(m.model, m.epoch_rows, m.macs, m.cost, m.diverged_at) for m in members
        ]

    @staticmethod
    def _combine(members: list[_Member], losses: torch.Tensor) -> torch.Tensor:
        """Each member's combined loss, (P,). Equal weighting's sum has gradient one per task
        whatever its summation order, so it is one reduction; the others are the members' own
        ``combine`` (elementwise gradients: exact)."""
        if all(m.trainer.spec["weighting"] == "equal" for m in members):
            return losses.sum(dim=1)
        return torch.stack([m.weighting.combine(losses[p], m.model) for p, m in enumerate(members)])

    @staticmethod
    def _own_parameters(m: _Member) -> list[nn.Parameter]:
        return list(m.model.parameters()) + list(m.weighting.parameters())

    def _save_checkpoints(self, members, optimizer, epoch: int, elapsed) -> None:
        for m in members:
            if m.done:
                continue
            for param in self._own_parameters(m):
                if param in optimizer.state:
                    m.optimizer.state[param] = optimizer.state[param]
            t = m.trainer
            t.checkpoint.save(
                t.checkpoint_state(
                    epoch, elapsed(m), m.model, m.optimizer, m.weighting, m.epoch_rows
                )
            )


def _out_of_memory(err: BaseException) -> bool:
    # CUDA raises OutOfMemoryError; the CPU allocator a plain RuntimeError.
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "can't allocate memory" in str(err)
    )


def train_pack(
    trainers: Sequence[Trainer], log: Callable[[str], None] = lambda line: None
) -> list[pa.Table]:
    """Train ``trainers`` packed; if the pack does not fit in memory, split it in halves and
    retry (a one-network pack that does not fit raises :class:`PackMemoryError`)."""
    try:
        return PackedTrainer(trainers).fit()
    except (torch.OutOfMemoryError, RuntimeError) as err:
        if not _out_of_memory(err):
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


def run_packed_job(input: dict, output: dict, params: dict, log: list, pending, size: int) -> None:
    """The ``train`` job body when packing: this network is trained in a pack of the trainings
    ``pending()`` lists (see :class:`PackScheduler`); its own files are written as alone."""
    from .datasets import load_dataset
    from .schema import METRICS, write_table
    from .split import read_split
    from .training import Checkpointer, resolve_device

    device = resolve_device()
    job = TrainJob(
        params["spec"], output["metrics"], log[0], params.get("checkpoint"), input["split"]
    )

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
        for slot, table in zip(slots, train_pack(trainers, slots[0].lines.append)):
            slot.table = table

    slot = SCHEDULER.run(job, pending, size, train)
    with open(log[0], "w") as log_file:
        log_file.write("".join(line + "\n" for line in slot.lines))
        if slot.error is not None:
            log_file.write(f"pack failed: {slot.error!r}\n")
    if slot.error is not None:
        raise RuntimeError(f"the pack training {job.output} failed: {slot.error}") from slot.error
    write_table(slot.table, output["metrics"], METRICS)
    Checkpointer(job.checkpoint).remove()
