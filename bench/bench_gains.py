"""Per-sample test losses and the bootstrap interval at ToxCast's scale (617 assays).

1. Size: trains a few real ToxCast networks (one epoch each: the file holds the final losses,
   whose size does not depend on how long the network trained), writes their TEST_LOSSES files
   and measures bytes per labelled test value. Multiplies by the labelled test values of the
   default ``tag`` sweep (617 full singles + the all-in-one network + the decided groups, whose
   summed task count is given: ``--group-tasks``).
2. Speed: one paired bootstrap comparison (2,000 resamples) of the all-in-one network against a
   grouping serving the 617 tasks by ``--networks`` networks, on per-sample files with the real
   all-in-one's rows and tasks. Reports seconds and the load average.

    nice -n 5 .venv/bin/python bench/bench_gains.py
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from pipeline.config import resolve_config
from pipeline.datasets import load_dataset
from pipeline.sample_losses import final_sample_losses, write_sample_losses
from pipeline.selection.gains import SampleLosses, Served, bootstrap_interval
from pipeline.split import make_split
from pipeline.sweep import network_spec
from pipeline.training import Trainer

CPU = torch.device("cpu")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--networks", type=int, default=32)
    parser.add_argument("--resamples", type=int, default=2000)
    # TAG's 55 groups on ToxCast (issue 19: 381, 236, 226, ... 2 tasks); their summed size.
    parser.add_argument("--group-tasks", type=int, nargs="+", default=[2000, 5000, 10000])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"load before: {os.getloadavg()}")

    config = resolve_config(
        {"dataset": {"name": "toxcast"}, "training": {"epochs": 1}}, check_data=False
    )
    data = load_dataset(config["dataset"])
    labels = make_split(data.n_rows, config["split"]["fractions"], config["split"]["seed"])
    tasks = config["dataset"]["tasks"]
    test = labels == "test"
    labelled = (~np.isnan(data.targets[test][:, [data.task_index(t) for t in tasks]])).sum(axis=0)
    print(f"{len(tasks)} tasks, {int(test.sum())} test rows, {int(labelled.sum())} labelled test "
          f"values (per task: median {np.median(labelled):.0f}, min {labelled.min()})")  # fmt: skip

    out = Path(tempfile.mkdtemp(prefix="bench_gains_"))
    sizes = {}
    for name, subset in (("single", tasks[:1]), ("10 tasks", tasks[:10]), ("all-in-one", tasks)):
        start = time.perf_counter()
        trainer = Trainer(data, labels, network_spec(config, tuple(subset), "full", 0), CPU)
        trainer.fit()
        table = final_sample_losses(trainer)
        path = out / f"{len(subset)}.parquet"
        write_sample_losses(table, path)
        sizes[name] = (path.stat().st_size, table.num_rows)
        print(f"{name}: {table.num_rows} labelled test values, {path.stat().st_size} bytes, "
              f"{path.stat().st_size / table.num_rows:.2f} B/value "
              f"(trained + written in {time.perf_counter() - start:.1f}s)")  # fmt: skip
    # A file costs a fixed overhead (footer, schema, column chunks) plus bytes per value.
    n_values = np.array([v for _, v in sizes.values()], dtype=float)
    n_bytes = np.array([b for b, _ in sizes.values()], dtype=float)
    per_value, per_file = np.polyfit(n_values, n_bytes, 1)
    total = int(labelled.sum())
    mean_per_task = total / len(tasks)
    print(f"\nfit: {per_file:,.0f} B per file + {per_value:.2f} B per labelled test value")
    print(f"default tag sweep at {len(tasks)} tasks:")
    print("| networks | files | labelled test values | size |")
    print("|---|---:|---:|---:|")
    # 617 singles cover every labelled value once, the all-in-one once more.
    files, values = len(tasks) + 1, 2 * total
    size = files * per_file + values * per_value
    print(f"| {len(tasks)} singles + all-in-one | {files} | {values:,} | {size / 2**20:.1f} MiB |")
    for group_tasks in args.group_tasks:
        more = values + group_tasks * mean_per_task
        size = (files + 55) * per_file + more * per_value
        print(f"| + 55 groups of {group_tasks:,} tasks in all | {files + 55} | {more:,.0f} | "
              f"{size / 2**20:.1f} MiB |")  # fmt: skip

    # ---- the bootstrap at 617 tasks ---------------------------------------------------------
    aio = pq.read_table(out / f"{len(tasks)}.parquet")
    rng = np.random.default_rng(0)
    owner = rng.integers(0, args.networks, len(tasks))
    files = {"aio": str(out / f"{len(tasks)}.parquet")}
    for k in range(args.networks):
        mine = [t for t, o in zip(tasks, owner) if o == k]
        part = aio.filter(pc.is_in(aio["task"], pa.array(mine)))
        noisy = part["loss"].to_numpy() * rng.uniform(0.8, 1.2, part.num_rows)
        part = part.set_column(5, "loss", pa.array(noisy.astype(np.float32)))
        files[f"n{k}"] = str(out / f"n{k}.parquet")
        write_sample_losses(part, files[f"n{k}"])

    def means(path: str) -> dict[str, float]:
        frame = pq.read_table(path).to_pandas()
        return frame.groupby("task")["loss"].mean().to_dict()

    aio_means = means(files["aio"])
    group_means = {}
    for k in range(args.networks):
        group_means.update(means(files[f"n{k}"]))
    reference = Served("all_in_one", 32.0, tuple(tasks), ("aio",) * len(tasks),
                       np.array([aio_means[t] for t in tasks]), {0: 0.0})  # fmt: skip
    grouping = Served("optimal", 32.0, tuple(tasks), tuple(f"n{o}" for o in owner),
                      np.array([group_means[t] for t in tasks]), {0: 0.0})  # fmt: skip
    rows = np.flatnonzero(test)
    load = os.getloadavg()
    start = time.perf_counter()
    samples = SampleLosses(files, rows, args.resamples)
    gain = bootstrap_interval(grouping, reference, samples)
    first = time.perf_counter() - start
    start = time.perf_counter()
    # A second comparison sharing the all-in-one: its resampled sums are reused.
    bootstrap_interval(reference, grouping, samples)
    second = time.perf_counter() - start
    print(f"\nbootstrap, {len(tasks)} tasks served by {args.networks} networks vs the "
          f"all-in-one, {args.resamples} resamples over {rows.size} test rows: {first:.2f}s "
          f"(files read and resampled), {second:.3f}s for a second comparison sharing them; "
          f"load {load}")  # fmt: skip
    print(f"difference {gain.difference:+.4f} [{gain.low:+.4f}, {gain.high:+.4f}]")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
