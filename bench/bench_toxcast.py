"""ToxCast's 617 assays end to end on this machine (issue #11): estimation, candidate training,
the independent baseline's single-task networks, the solve and the report, once per config.

Reports wall time, peak memory (the largest resident set of the Snakemake process, which runs
every training in its threads), the networks trained and the in-process training seconds per
stage, and what the solve found against the all-in-one network and independent networks.

    .venv/bin/python bench/bench_toxcast.py [--configs bench/configs/toxcast_tag.yaml ...]
        [--cores 2] [--out bench/out/toxcast]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
CONFIGS = [REPO / "bench/configs/toxcast_tag.yaml", REPO / "bench/configs/toxcast_sampled.yaml"]


def run(config: Path, out: Path, cores: int) -> tuple[Path, float, float]:
    workdir = out / config.stem
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    shutil.copy(config, workdir / "config.yaml")
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
        "--cores", str(cores), "--quiet",
    ]  # fmt: skip
    started = time.perf_counter()
    with open(workdir / "snakemake.log", "w") as log:
        proc = subprocess.run(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    wall = time.perf_counter() - started
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    if proc.returncode:
        raise SystemExit(f"{config.name}: snakemake failed, see {workdir / 'snakemake.log'}")
    return workdir / "results", wall, peak_gib


def stage_seconds(results: Path) -> pd.DataFrame:
    networks = pq.read_table(results / "networks.parquet").to_pandas()
    columns = ["network", "seed", "n_tasks", "wall_time_s"]
    metrics = pq.read_table(results / "metrics.parquet", columns=columns).to_pandas()
    per_net = metrics.groupby(["network", "seed"]).agg(
        n_tasks=("n_tasks", "first"), seconds=("wall_time_s", "max")
    )
    n = int(networks["n_tasks"].max())
    kind = per_net["n_tasks"].map(lambda k: "single" if k == 1 else "all-in-one" if k == n
                                  else "group / subset")  # fmt: skip
    return per_net.groupby(kind)["seconds"].agg(["count", "sum"])


def answer(results: Path) -> pd.DataFrame:
    frame = pq.read_table(results / "groupings.parquet").to_pandas()
    method_column = "selection_method" if "selection_method" in frame else "method"
    frame = frame[frame["status"] == "ok"]
    totals = frame.groupby([method_column, "budget"])["test_total"].first().unstack(0)
    return totals[[c for c in ("optimal", "all_in_one", "independent") if c in totals]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", type=Path, default=CONFIGS)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "toxcast")
    args = parser.parse_args()
    if len(args.configs) > 1:
        # One process per config: a process's peak child memory covers all its children.
        for config in args.configs:
            subprocess.run([sys.executable, __file__, "--configs", str(config), "--cores",
                            str(args.cores), "--out", str(args.out)], check=True)  # fmt: skip
        return
    print(f"load before: {os.getloadavg()}")
    for config in args.configs:
        results, wall, peak = run(config, args.out, args.cores)
        print(f"\n## {config.name}: wall {wall / 60:.1f} min, peak memory {peak:.2f} GiB")
        print(stage_seconds(results).to_markdown())
        groups = json.loads(next((results / "groups").glob("*.json")).read_text())
        print(f"\ncandidate networks: {len(groups['networks'])}")
        print(answer(results).to_markdown(floatfmt=".3f"))
        print(f"load after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
