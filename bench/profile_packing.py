"""Where a pack's epochs spend their time: cProfile of ``PackedTrainer.fit`` on Tox21 pairs
(the default config's shape: 1024 ECFP bits -> 128 -> 128, batch 256), grouped into the
step's parts (forward, loss, backward, first-layer gradient, Adam) and the epoch's end
(evaluation, metrics, rows).

    nice -n 5 .venv/bin/python bench/profile_packing.py --members 22 --epochs 3
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import os
import pstats
import time

import torch

from pipeline.config import resolve_config
from pipeline.datasets import load_dataset
from pipeline.packing import PackedTrainer
from pipeline.split import make_split
from pipeline.sweep import network_spec
from pipeline.training import Trainer

TOX21 = [
    "NR-AR", "NR-AR-LBD", "NR-AhR", "NR-Aromatase", "NR-ER", "NR-ER-LBD", "NR-PPAR-gamma",
    "SR-ARE", "SR-ATAD5", "SR-HSE", "SR-MMP", "SR-p53",
]  # fmt: skip
# Functions whose cumulative time is reported (a part of the epoch each).
PARTS = {
    "forward (PackedHardSharing)": "forward",
    "first layer backward (sparse rows)": "backward",
    "all backward": "run_backward",
    "Adam step": "_fused_adam",
    "loss": "masked_binary_losses",
    "close_epoch (evaluation + rows + log)": "close_epoch",
    "evaluation": "evaluate",
    "metrics (ROC AUC)": "task_metric",
    "epoch batches": "epoch_batches",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=22)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = resolve_config({"dataset": {"name": "tox21"}, "training": {"epochs": args.epochs}})
    data = load_dataset(config["dataset"])
    labels = make_split(data.n_rows, config["split"]["fractions"], 0)
    pairs = list(itertools.combinations(TOX21, 2))[: args.members]
    trainers = [Trainer(data, labels, network_spec(config, p, "full", 0), torch.device("cpu"))
                for p in pairs]  # fmt: skip
    for t in trainers:
        _ = t.inputs  # data preparation is not an epoch's
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    PackedTrainer(trainers).fit()
    profiler.disable()
    wall = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    per_epoch_member = 1000 * wall / (args.epochs * len(trainers))
    print(f"{len(trainers)} members x {args.epochs} epochs: {wall:.2f} s, "
          f"{per_epoch_member:.1f} ms per network epoch; load {os.getloadavg()}")  # fmt: skip
    total = {}
    for (file, _, name), (_, _, _, cumulative, _) in stats.stats.items():
        for part, func in PARTS.items():
            if name == func and ("packing" in file or "training" in file or "metrics" in file
                                 or func in ("run_backward", "_fused_adam")):  # fmt: skip
                total[part] = total.get(part, 0.0) + cumulative
    for part, seconds in total.items():
        print(f"  {part:40s} {seconds:7.2f} s  {100 * seconds / wall:5.1f} %")
    stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
