"""Two parts of a pack's epoch, each against the way main did it, alternated in one process
(the machine's load moves both alike): the sparse first layer's weight gradient (one
``index_add_`` over all members' touched rows, against ``embedding_bag``'s own backward per
member), and the evaluation (one packed forward per chunk of rows, against each member's own
forward, as ``pipeline.packing`` does). Reports whether both ways give bitwise the same numbers.
Both tried variants were bitwise equal and slower, so the package keeps the per-member ways.

    nice -n 5 .venv/bin/python bench/bench_pack_parts.py --members 28 --repeats 5
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time

import torch
from torch import nn

from pipeline.config import resolve_config
from pipeline.datasets import load_dataset
from pipeline.models.layers import SparseBatch
from pipeline.packing import PackedHardSharing, _packed_take, _PackedBinaryInput
from pipeline.schema import SPLITS
from pipeline.split import make_split
from pipeline.sweep import network_spec
from pipeline.training import EVAL_CHUNK, Trainer, _evaluate, score_outputs

TOX21 = [
    "NR-AR", "NR-AR-LBD", "NR-AhR", "NR-Aromatase", "NR-ER", "NR-ER-LBD", "NR-PPAR-gamma",
    "SR-ARE", "SR-ATAD5", "SR-HSE", "SR-MMP", "SR-p53",
]  # fmt: skip


class TouchedRowsInput(torch.autograd.Function):
    """Member p's rows of a stacked (P, in, out) weight summed per bag, for P networks' batches
    in one ``embedding_bag`` call (the tried variant of ``pipeline.packing._PackedBinaryInput``).

    The backward computes only the weight rows the batches touch, for every member in one
    ``index_add_``: ``embedding_bag``'s CPU backward adds each bag's gradient to its rows in the
    order of ``indices.sort()`` (unstable: ties keep no fixed order), so each member's own
    indices are sorted alone (a sort over all members could order ties otherwise: last-bit
    differences that grow over training) and their contributions are added in that order. The
    members' rows are disjoint, so one call over all of them adds each row as alone. The
    gradient stays a dense tensor (untouched rows zero): Adam moves every row (its moments and
    weight decay), exactly as alone."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, indices: torch.Tensor, offsets: torch.Tensor, n: int):
        p, in_features, out_features = weight.shape
        out = nn.functional.embedding_bag(
            indices, weight.reshape(-1, out_features), offsets, mode="sum"
        )
        ctx.save_for_backward(indices, offsets)
        ctx.shape = (p, in_features, out_features, n)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        indices, offsets = ctx.saved_tensors
        p, in_features, out_features, n = ctx.shape
        order = _member_sort_order(indices, offsets, p, n, in_features)
        bag_of_entry = SparseBatch(indices, offsets).row_of_entry()
        contributions = grad.index_select(0, bag_of_entry[order])
        rows = indices[order]
        weight_grad = grad.new_zeros(p * in_features, out_features)
        weight_grad.index_add_(0, rows, contributions)
        return weight_grad.view(p, in_features, out_features), None, None, None


def _member_sort_order(
    indices: torch.Tensor, offsets: torch.Tensor, p: int, n: int, in_features: int
) -> torch.Tensor:
    """The entry order in which ``embedding_bag``'s backward would add each member's
    contributions alone: each member's own (offset-free) indices sorted alone."""
    bounds = torch.cat([offsets[::n], offsets.new_tensor([indices.numel()])]).tolist()
    orders = []
    for m in range(p):
        lo, hi = bounds[m], bounds[m + 1]
        orders.append((indices[lo:hi] - m * in_features).sort().indices + lo)
    return torch.cat(orders)


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = resolve_config({"dataset": {"name": "tox21"}})
    data = load_dataset(config["dataset"])
    labels = make_split(data.n_rows, config["split"]["fractions"], 0)
    pairs = list(itertools.combinations(TOX21, 2))[: args.members]
    trainers = [Trainer(data, labels, network_spec(config, p, "full", 0), torch.device("cpu"))
                for p in pairs]  # fmt: skip
    models = [t.build_model() for t in trainers]
    packed = PackedHardSharing(models)
    x = trainers[0].inputs.x
    weight = packed.by_name["trunk.layers.0.weight"]
    batches = torch.stack([t.epoch_batches()[0] for t in trainers])
    n = batches.shape[1]
    sparse = _packed_take(x, batches, weight.shape[1])
    grad = torch.randn(len(trainers) * n, weight.shape[2])

    def backward_with(function):
        w = weight.detach().requires_grad_()
        out = function.apply(w, sparse.indices, sparse.offsets, n)
        (g,) = torch.autograd.grad(out, w, grad)
        return g

    def new_backward():
        return backward_with(TouchedRowsInput)

    def old_backward():
        return backward_with(_PackedBinaryInput)

    def together():
        with torch.no_grad():
            outputs = {p: {} for p in range(len(models))}
            for split in SPLITS:
                rows = trainers[0].inputs.rows[split]
                for p in outputs:
                    outputs[p][split] = []
                for i in range(0, rows.numel(), EVAL_CHUNK):
                    out = packed(x, rows[i : i + EVAL_CHUNK].expand(len(models), -1))
                    for p in outputs:
                        # Per task (P, rows, out), or per member where heads run alone.
                        own = out[p] if isinstance(out[0], list) else [o[p] for o in out]
                        outputs[p][split].append(own)
            return [score_outputs(outputs[p], t.inputs, t.types) for p, t in enumerate(trainers)]

    def alone():
        return [_evaluate(m, t.inputs, t.types, False) for m, t in zip(models, trainers)]

    together()  # one-time probes of the new shapes, not an epoch's cost
    rows = {}
    for name, a, b in (("first-layer gradient per step", new_backward, old_backward),
                       ("evaluation per epoch", together, alone)):  # fmt: skip
        ta, tb = [], []
        for _ in range(args.repeats):  # alternated: the load moves both alike
            ra, t1 = timed(a, 1)
            rb, t2 = timed(b, 1)
            ta += t1
            tb += t2
        equal = torch.equal(ra, rb) if isinstance(ra, torch.Tensor) else ra == rb
        rows[name] = {
            "new_ms": round(1000 * statistics.median(ta), 1),
            "main_ms": round(1000 * statistics.median(tb), 1),
            "bitwise_equal": bool(equal),
        }
    print(json.dumps({"members": len(trainers), "load": os.getloadavg(), **rows}))


if __name__ == "__main__":
    main()
