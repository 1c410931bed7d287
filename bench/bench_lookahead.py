"""TAG's lookahead cost relative to plain training (issue #10), and the vectorised lookahead
against a per-task Python loop.

For each dataset's all-in-one network: the in-process training time without and with the
affinity recorder at several ``every`` values (same spec, same seed, same epochs), and the
seconds per lookahead step, vectorised (torch.func) and task by task (the slow reference of
tests/test_affinity_lookahead.py) on the same batch.

    .venv/bin/python bench/bench_lookahead.py [--epochs 3] [--datasets tox21 toxcast]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_affinity_lookahead import _slow_reference  # noqa: E402

from pipeline.affinity.lookahead import AffinityRecorder  # noqa: E402
from pipeline.config import resolve_config  # noqa: E402
from pipeline.datasets import load_dataset  # noqa: E402
from pipeline.split import make_split  # noqa: E402
from pipeline.sweep import network_spec  # noqa: E402
from pipeline.training import Trainer  # noqa: E402

CPU = torch.device("cpu")


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(ln.split(":", 1)[1].strip() for ln in out.splitlines()
                     if ln.startswith("Model name"))  # fmt: skip
    except Exception:  # noqa: BLE001
        model = platform.processor()
    return f"{model}, {os.cpu_count()} vCPUs, load {os.getloadavg()[0]:.1f}"


def trainer_for(name: str, epochs: int) -> Trainer:
    config = resolve_config({"dataset": {"name": name}, "training": {"epochs": epochs}},
                            check_data=False)  # fmt: skip
    data = load_dataset(config["dataset"])
    labels = make_split(data.n_rows, config["split"]["fractions"], config["split"]["seed"])
    spec = network_spec(config, tuple(config["dataset"]["tasks"]), "full", 0)
    return Trainer(data, labels, spec, CPU)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", default=["tox21", "toxcast"])
    parser.add_argument("--every", nargs="+", type=int, default=[1, 5, 10])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}; torch threads {args.threads}; epochs {args.epochs}\n")
    print("| dataset | tasks | every | plain training (s) | with lookahead (s) | overhead | "
          "lookahead steps | s per step (kernel, default model) | s per step (jacrev/vmap, "
          "any model) | s per step (task loop) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.datasets:
        trainer_for(name, 1).fit()  # warm-up: caches, allocator, first-call costs
        trainer = trainer_for(name, args.epochs)
        n = len(trainer.tasks)
        started = time.perf_counter()
        trainer.fit()
        plain = time.perf_counter() - started
        model = trainer.build_model()
        batch = trainer.epoch_batches()[0]
        recorder = AffinityRecorder(trainer)
        recorder.step_affinity(model, batch)  # warm-up
        started = time.perf_counter()
        recorder.step_affinity(model, batch)
        vectorised = time.perf_counter() - started
        started = time.perf_counter()
        recorder._generic_lookahead(model, batch)
        generic = time.perf_counter() - started
        loop = float("nan")
        if n <= 100:
            started = time.perf_counter()
            _slow_reference(trainer, model, batch, trainer.lr)
            loop = time.perf_counter() - started
        for every in args.every:
            observed = trainer_for(name, args.epochs)
            recorder = AffinityRecorder(observed, every=every)
            observed.observer = recorder
            started = time.perf_counter()
            observed.fit()
            total = time.perf_counter() - started
            steps = recorder.step
            print(f"| {name} | {n} | {every} | {plain:.1f} | {total:.1f} | "
                  f"{(total - plain) / plain:+.0%} | {-(-steps // every)} | {vectorised:.3f} | "
                  f"{generic:.3f} | {loop:.3f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
