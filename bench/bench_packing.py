"""Packed training vs one network per job: the Tox21 sweep (or a task subset) run by the real
workflow on the default local profile, once with ``training.pack: off`` and once with ``auto``.

Reports Snakemake's wall time, the sum of in-process training time (each network's last
``wall_time_s``; a packed member records its share of its pack's time), the per-network epoch
time against the arithmetic floor, peak memory, and whether every network's metrics are equal
between the two runs.

    nice -n 5 .venv/bin/python bench/bench_packing.py                  # all 12 tasks: 311 networks
    nice -n 5 .venv/bin/python bench/bench_packing.py --tasks 8        # first 8 tasks: 101 networks
    nice -n 5 .venv/bin/python bench/bench_packing.py --orders 1,2     # the issue's 91 networks
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parent.parent
TOX21 = [
    "NR-AR", "NR-AR-LBD", "NR-AhR", "NR-Aromatase", "NR-ER", "NR-ER-LBD", "NR-PPAR-gamma",
    "SR-ARE", "SR-ATAD5", "SR-HSE", "SR-MMP", "SR-p53",
]  # fmt: skip


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run(
    workdir: Path, tasks: list[str], pack: str, cores: int, epochs: int, orders: list[int]
) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["dataset"]["tasks"] = tasks
    config["training"]["epochs"] = epochs
    config["training"]["pack"] = pack
    config["sweep"]["orders"] = orders
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
        "--cores", str(cores), "results/metrics.parquet",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    load = os.getloadavg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    files = sorted((workdir / "results" / "runs").rglob("*.parquet"))
    train_s = sum(max(pq.read_table(f, columns=["wall_time_s"])["wall_time_s"].to_pylist())
                  for f in files)  # fmt: skip
    packs = []
    for log in (workdir / "results" / "logs" / "train").rglob("*.log"):
        first = log.read_text().splitlines()[:1]
        if first and "in a pack of" in first[0]:
            packs.append(int(first[0].rsplit(" ", 1)[1]))
    return {
        "pack": pack, "networks": len(files), "wall_s": round(wall, 1),
        "train_sum_s": round(train_s, 1),
        "epoch_ms_per_network": round(1000 * train_s / (len(files) * epochs), 1),
        # ru_maxrss of the largest child so far: meaningful for the first run, an upper
        # bound for later ones.
        "peak_rss_mb": round(max(peak_kb, before) / 1024), "packed_networks": len(packs),
        "largest_pack": max(packs, default=1), "load_before": [round(x, 2) for x in load],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }  # fmt: skip


def same_results(a: Path, b: Path) -> tuple[int, int, float]:
    """(bitwise equal networks, networks, largest relative difference of any value)."""
    import numpy as np

    drop = ["wall_time_s", "versions", "device"]
    files = sorted(p.relative_to(a) for p in (a / "results" / "runs").rglob("*.parquet"))
    equal, worst = 0, 0.0
    for f in files:
        ta, tb = pq.read_table(a / f).drop(drop), pq.read_table(b / f).drop(drop)
        equal += ta.equals(tb)
        va = np.asarray(ta["value"].to_numpy(zero_copy_only=False), dtype=float)
        vb = np.asarray(tb["value"].to_numpy(zero_copy_only=False), dtype=float)
        ok = ~np.isnan(va) & ~np.isnan(vb)
        rel = np.abs(va[ok] - vb[ok]) / np.maximum(np.abs(va[ok]), 1e-30)
        worst = max(worst, float(rel.max(initial=0.0)))
    return equal, len(files), worst


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=12, help="first N Tox21 tasks")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--workdir", default="/tmp/bench_packing")
    parser.add_argument("--order", default="auto,off", help="which runs, in this order")
    # 1,2: the 91-network sweep (12 singles at two sizes, 66 pairs, all-in-one).
    parser.add_argument("--orders", default="1,2,3", help="sweep.orders (task-set sizes)")
    args = parser.parse_args()
    tasks = TOX21[: args.tasks]
    root = Path(args.workdir)
    results = []
    for pack in args.order.split(","):
        d = root / pack
        subprocess.run(["rm", "-rf", str(d)], check=True)
        orders = [int(k) for k in args.orders.split(",")]
        results.append(run(d, tasks, pack, args.cores, args.epochs, orders))
        print(json.dumps(results[-1]), flush=True)
    equal, total, worst = same_results(root / "off", root / "auto")
    by = {r["pack"]: r for r in results}
    print(json.dumps({
        "cpu": cpu_model(), "cores": args.cores, "tasks": len(tasks), "epochs": args.epochs,
        "wall_speedup": round(by["off"]["wall_s"] / by["auto"]["wall_s"], 2),
        "train_sum_speedup": round(by["off"]["train_sum_s"] / by["auto"]["train_sum_s"], 2),
        "results_equal": f"{equal}/{total}", "max_relative_difference": worst,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
