"""Would lazy (sparse) Adam on the fingerprint layer pay? (issue 21, item 3.)

Lazy Adam moves only the first-layer rows a batch touches (their moments included) and skips
the rest; it changes results, so it could only be an opt-in ``training.optimizer``. Its best case
is the share of rows a batch leaves untouched. This measures both parts, on the built-in
1024-bit ECFP4 tables:

1. the share of the 1,024 first-layer rows a random training batch touches, per batch size;
2. one network's training time per epoch (steps only, evaluation excluded), plain fused Adam
   (the package's) against the tried recipe: ``embedding_bag(sparse=True)`` for the layer's
   weight, ``torch.optim.SparseAdam`` for it (weight decay added to the touched rows' gradient,
   as Adam's L2 does) and fused Adam for every other parameter; alternated in one process.

The tried recipe lives here only: the package does not offer it (README, Packed training).

    nice -n 5 .venv/bin/python bench/bench_lazy_adam.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from torch import nn

from pipeline.config import resolve_config
from pipeline.datasets import load_dataset
from pipeline.models import layers
from pipeline.split import make_split
from pipeline.sweep import network_spec
from pipeline.training import Trainer


def touched_share(features: np.ndarray, batch: int, draws: int = 200, seed: int = 0) -> float:
    """Mean share of feature columns with a set bit in a random batch of ``batch`` rows."""
    rng = np.random.default_rng(seed)
    shares = [
        float((features[rng.choice(len(features), batch, replace=False)].sum(0) > 0).mean())
        for _ in range(draws)
    ]
    return statistics.fmean(shares)


class LazyAdam:
    """SparseAdam on the fingerprint layer's weight, fused Adam on the rest (the tried recipe)."""

    def __init__(self, model: nn.Module, weighting: nn.Module, lr: float, weight_decay: float):
        first = next(m for m in model.modules() if isinstance(m, layers.BinaryInput))
        self.weight, self.weight_decay = first.weight, weight_decay
        rest = [p for p in [*model.parameters(), *weighting.parameters()] if p is not first.weight]
        self.dense = torch.optim.Adam(rest, lr=lr, weight_decay=weight_decay, fused=True)
        self.sparse = torch.optim.SparseAdam([first.weight], lr=lr)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.dense.zero_grad(set_to_none)
        self.sparse.zero_grad(set_to_none)

    def step(self) -> None:
        grad = self.weight.grad.coalesce()
        if self.weight_decay:
            rows = grad.indices()[0]
            values = grad.values() + self.weight_decay * self.weight.detach()[rows]
            self.weight.grad = torch.sparse_coo_tensor(
                grad.indices(), values, grad.shape, is_coalesced=True, check_invariants=False
            )
        self.sparse.step()
        self.dense.step()


def _sparse_forward(self: layers.BinaryInput, batch: layers.SparseBatch) -> torch.Tensor:
    out = nn.functional.embedding_bag(
        batch.indices, self.weight, batch.offsets, mode="sum", sparse=True
    )
    return out + self.bias


def epoch_ms(data, labels, spec: dict, lazy: bool, epochs: int) -> tuple[float, float]:
    """(ms per training epoch, final validation loss sum) of one network."""
    trainer = Trainer(data, labels, spec, torch.device("cpu"))
    forward = layers.BinaryInput.forward
    if lazy:
        layers.BinaryInput.forward = _sparse_forward
        trainer.new_optimizer = lambda model, weighting: LazyAdam(
            model, weighting, trainer.lr, trainer.weight_decay
        )
    spent = []
    run_epoch = trainer.run_epoch

    def timed_epoch(*args, **kwargs):
        start = time.perf_counter()
        result = run_epoch(*args, **kwargs)
        spent.append(time.perf_counter() - start)
        return result

    trainer.run_epoch = timed_epoch
    try:
        table = trainer.fit().to_pandas()
    finally:
        layers.BinaryInput.forward = forward
    final = table[(table.split == "val") & (table.metric == "loss") & (table.epoch == epochs)]
    return 1000 * statistics.fmean(spent), float(final.value.sum())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256])
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {"touched": {}, "epoch_ms": {}}
    for name in ("tox21", "toxcast"):
        features = np.asarray(load_dataset({"name": name}).features)
        results["touched"][name] = {
            b: round(touched_share(features, b), 3) for b in (16, 32, 64, 128, 256, 512)
        }
        print(name, "share of first-layer rows a batch touches:", results["touched"][name])
    config = resolve_config({"dataset": {"name": "tox21"}})
    data = load_dataset(config["dataset"])
    labels = make_split(data.n_rows, config["split"]["fractions"], config["split"]["seed"])
    tasks = tuple(data.task_names)
    for batch in args.batch_sizes:
        spec = network_spec(config, tasks, "full", 0)
        spec["training"].update(epochs=args.epochs, batch_size=batch)
        times = {"adam": [], "lazy": []}
        losses = {}
        for _ in range(args.repeats):
            for method in times:  # alternated: the machine's load moves both alike
                ms, loss = epoch_ms(data, labels, spec, method == "lazy", args.epochs)
                times[method].append(ms)
                losses[method] = loss
        row = {m: round(statistics.median(t), 1) for m, t in times.items()}
        row["val_loss_sum"] = {m: round(v, 4) for m, v in losses.items()}
        results["epoch_ms"][batch] = row
        print(f"batch {batch}: ms/epoch (median of {args.repeats})", row)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
