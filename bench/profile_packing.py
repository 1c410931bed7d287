"""Where a pack's epochs spend their time: cProfile of ``PackedTrainer.fit`` on Tox21 pairs
(the default config's shape: 1024 ECFP bits -> 128 -> 128, batch 256), after an untimed pack
of the same shapes (one-time imports and kernel probes): the loop's functions by cumulative
time, then everything by own time.

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
    # Lazy imports and the kernels' exactness probes at these shapes are one-time costs.
    PackedTrainer([t.fresh() for t in trainers]).fit()
    trainers = [t.fresh() for t in trainers]
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
    # The loop's own functions by cumulative time (nested ones are inside their callers).
    stats.sort_stats("cumulative").print_stats(r"packing|training|metrics|optim|autograd", 20)
    stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
