"""Benchmark the sweep's execution overhead: wall time vs. in-process training time.

Runs the workflow (default: the full Tox21 demo, config.yaml) into a scratch results dir and
reports wall time next to the sum of every network's in-process training + evaluation time
(``wall_time_s`` at its last epoch). The target of the sweep issue is
``wall / (sum of training time / cores) <= 1.10`` and the demo in <= 10 minutes on 2 cores.

On a 2-vCPU machine the two vCPUs give about one core of throughput, so in-process times
measured while two trainings share the machine are inflated. The benchmark therefore first
runs serially (``--cores 1``: in-process times are clean) and then with ``--cores N``, and
computes both ratios against the serial sum.

Also measured: what one network would pay as its own process (``python -c 'import torch'``),
the overhead the in-thread design avoids.

Usage: python bench/bench_sweep.py [--configfile config.yaml] [--cores 2] [--skip-serial]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent


def run_sweep(configfile: Path, results: Path, cores: int) -> float:
    shutil.rmtree(results, ignore_errors=True)
    cmd = [
        sys.executable, "-m", "snakemake", "collect", "--snakefile", str(REPO / "Snakefile"),
        "--cores", str(cores), "--quiet", "--configfile", str(configfile),
        "--config", f"results_dir={results}",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return time.perf_counter() - start


def training_seconds(results: Path) -> tuple[int, float]:
    table = pq.read_table(results / "metrics.parquet", columns=["network", "seed", "wall_time_s"])
    per_net = table.group_by(["network", "seed"]).aggregate([("wall_time_s", "max")])
    return per_net.num_rows, float(pc.sum(per_net["wall_time_s_max"]).as_py())


def process_startup() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configfile", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "sweep")
    parser.add_argument("--skip-serial", action="store_true")
    args = parser.parse_args()

    rows = []
    serial_sum = None
    runs = ([] if args.skip_serial else [1]) + [args.cores]
    for cores in runs:
        results = args.out / f"cores{cores}"
        wall = run_sweep(args.configfile.resolve(), results.resolve(), cores)
        n, train = training_seconds(results)
        if cores == 1:
            serial_sum = train
        reference = serial_sum if serial_sum is not None else train
        rows.append((cores, n, wall, train, wall / (train / cores), wall / (reference / cores)))

    startup = min(process_startup() for _ in range(3))
    print(
        f"config: {args.configfile.name}; python -c 'import torch' = {startup:.2f} s "
        f"(what one process per network would add, per network)\n"
    )
    print(
        "| cores | networks | wall (s) | sum of in-process training (s) "
        "| wall / (training sum / cores) | wall / (serial training sum / cores) |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for cores, n, wall, train, ratio, serial_ratio in rows:
        print(f"| {cores} | {n} | {wall:.1f} | {train:.1f} | {ratio:.2f} | {serial_ratio:.2f} |")


if __name__ == "__main__":
    main()
