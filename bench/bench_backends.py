"""Local vs Dask vs SLURM on the same small sweep: wall time and per-training overhead.

    python bench/bench_backends.py                       # all backends it can run here
    python bench/bench_backends.py --backends local-threads,dask-local
    python bench/bench_backends.py --out bench/RESULTS_backends.md

Each backend runs the real workflow twice, on two sizes of the tiny synthetic sweep
(tests/configs/tiny.yaml with 3 tasks -> 7 trainings, and with 4 tasks -> 15 trainings), with
ONE execution slot (one core, one worker, one SLURM job at a time) so that nothing overlaps.
The fixed costs (Snakemake start, DAG, cluster start, split, collect) are the same in both
runs, so the marginal wall time of one more training is

    per training = (wall_15 - wall_7) / (15 - 7)

and its overhead is that minus the training's own compute when warm,

    overhead per training = per training - (train_15 - train_7) / (15 - 7)   [local-threads]

where train_N is the summed time *inside* the training function (the `s` column of the
train rule's Snakemake benchmark files) of the warm in-process local run. The overhead is what
one more training costs beyond its compute: a new Python process with a cold torch (its cold
start partly shows up inside the function: see the in-training column), a cluster job, a status
poll, or (in-process on a warm worker) almost nothing.

Raw measurements go to bench/out/backends.json; `--from-json` re-renders the table.

The SLURM backends need root; the script starts scripts/slurm-local.sh if SLURM is not up and
stops it again afterwards. Results are byte-compared with the local run (metrics table without
wall-time/device columns) so a fast but wrong backend cannot win.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from backends.helpers import (  # noqa: E402
    SMALL_SWEEP,
    check,
    count_trainings,
    slurm_local,
    slurm_unavailable,
    sweep,
    sweep_values,
)

PROFILES = REPO / "profiles"

#: backend -> (description, snakemake arguments for one execution slot)
BACKENDS: dict[str, tuple[str, list[str]]] = {
    "local-threads": (
        "local, `run:` jobs in threads of the Snakemake process (profiles/default)",
        ["--cores", "1"],
    ),
    "local-processes": (
        "local, one `python -m snakemake` process per job",
        ["--workflow-profile", "none", "--cores", "1"],
    ),
    "dask-local": (
        "Dask LocalCluster, trainings in-process in a warm worker (profiles/dask)",
        ["--workflow-profile", str(PROFILES / "dask"), "--jobs", "1", "--dask-workers", "1"],
    ),
    "slurm": (
        "SLURM plugin, trainings grouped 8 per SLURM job (profiles/slurm-local)",
        ["--workflow-profile", str(PROFILES / "slurm-local"), "--jobs", "1", "--cores", "1"],
    ),
    "dask-slurm": (
        "Dask workers as SLURM jobs (dask-jobqueue), trainings in-process",
        [
            "--workflow-profile",
            str(PROFILES / "dask"),
            "--jobs",
            "1",
            "--dask-cluster",
            "slurm",
            "--dask-slurm-jobs",
            "1",
            "--dask-slurm-cores",
            "1",
            "--dask-slurm-memory",
            "4GB",
            "--dask-slurm-interface",
            "lo",
        ],
    ),  # fmt: skip
}
SLURM_BACKENDS = {"slurm", "dask-slurm"}
SIZES = {"small": SMALL_SWEEP, "tiny": None}


RAW = REPO / "bench" / "out" / "backends.json"


@dataclass
class Measurement:
    wall_s: float
    trainings: int
    jobs: int
    train_s: float
    values: list[tuple]


def train_seconds(workdir: Path) -> float:
    """Summed time inside the training function, from Snakemake's benchmark TSVs."""
    total = 0.0
    for path in (workdir / "results" / "benchmarks" / "train").rglob("*.tsv"):
        with open(path) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        total += sum(float(r["s"]) for r in rows)
    return total


def run_once(backend: str, size: str, root: Path) -> Measurement:
    workdir = root / f"{backend}-{size}"
    shutil.rmtree(workdir, ignore_errors=True)
    run = check(sweep(workdir, *BACKENDS[backend][1], overrides=SIZES[size], timeout=1800))
    trainings = count_trainings(workdir)
    return Measurement(
        wall_s=run.seconds,
        trainings=trainings,
        jobs=trainings + 2,  # + split + collect
        train_s=train_seconds(workdir),
        values=sweep_values(workdir),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS_backends.md")
    parser.add_argument("--from-json", type=Path, help="re-render the table from raw results")
    args = parser.parse_args(argv)
    if args.from_json:
        raw = json.loads(args.from_json.read_text())
        results = {
            b: {size: Measurement(**m, values=[]) for size, m in sizes.items()}
            for b, sizes in raw["results"].items()
        }
        render(results, raw["same"], raw["when"], args.out)
        return
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}; choose from {list(BACKENDS)}")

    started_slurm = False
    if SLURM_BACKENDS & set(backends):
        reason = slurm_unavailable()
        if reason:
            print(f"skipping SLURM backends: {reason}", file=sys.stderr)
            backends = [b for b in backends if b not in SLURM_BACKENDS]
        elif slurm_local("status").returncode != 0:
            up = slurm_local("up")
            if up.returncode != 0:
                sys.exit(f"scripts/slurm-local.sh up failed:\n{up.stderr}")
            started_slurm = True

    root = Path(tempfile.mkdtemp(prefix="bench-backends-"))
    results: dict[str, dict[str, Measurement]] = {}
    try:
        for backend in backends:
            results[backend] = {}
            for size in SIZES:
                m = run_once(backend, size, root)
                results[backend][size] = m
                print(
                    f"{backend:16s} {size:6s} wall {m.wall_s:7.1f} s  trainings {m.trainings}"
                    f"  in-training {m.train_s:6.2f} s",
                    flush=True,
                )
    finally:
        if started_slurm:
            slurm_local("down")
        shutil.rmtree(root, ignore_errors=True)

    reference = next(iter(results.values()))
    same = {
        b: all(by_size[s].values == reference[s].values for s in SIZES)
        for b, by_size in results.items()
    }
    when = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    RAW.parent.mkdir(parents=True, exist_ok=True)
    RAW.write_text(
        json.dumps(
            {
                "when": when,
                "same": same,
                "results": {
                    b: {
                        size: {k: v for k, v in vars(m).items() if k != "values"}
                        for size, m in by_size.items()
                    }
                    for b, by_size in results.items()
                },
            },
            indent=1,
        )
    )
    render(results, same, when, args.out)


def render(
    results: dict[str, dict[str, Measurement]], same: dict[str, bool], when: str, out: Path
) -> None:
    first = next(iter(results.values()))
    n_small, n_tiny = first["small"].trainings, first["tiny"].trainings

    def per_training(m: dict[str, Measurement], attr: str) -> float:
        return (getattr(m["tiny"], attr) - getattr(m["small"], attr)) / (
            m["tiny"].trainings - m["small"].trainings
        )

    # The warm compute of one training: in-process local run if measured, else each its own.
    warm = results.get("local-threads")
    rows = []
    for backend, by_size in results.items():
        tiny = by_size["tiny"]
        wall_per = per_training(by_size, "wall_s")
        compute = per_training(warm or by_size, "train_s")
        rows.append(
            f"| {backend} | {BACKENDS[backend][0]} | {tiny.jobs} | {tiny.wall_s:.1f} | "
            f"{tiny.train_s:.2f} | {wall_per:.3f} | {wall_per - compute:.3f} | "
            f"{'yes' if same[backend] else '**NO**'} |"
        )
    table = "\n".join(
        [
            "| backend | how | jobs | wall (s) | in-training (s) | wall per extra training (s) "
            "| overhead per training (s) | results = local |",
            "|---|---|---:|---:|---:|---:|---:|---|",
            *rows,
        ]
    )
    text = f"""# Backends: local vs Dask vs SLURM

Measured by `python bench/bench_backends.py` on {when}: {platform.node()},
{os.cpu_count()} vCPUs (about one core of throughput), Python {platform.python_version()},
ONE execution slot per backend (one core, one worker, one SLURM job at a time: nothing
overlaps). SLURM: the single node of `scripts/slurm-local.sh` (Debian's 22.05, no accounting,
squeue status).

- *jobs*, *wall*, *in-training*: the tiny sweep ({n_tiny} trainings + split + collect);
  *in-training* is the summed time inside the training function (Snakemake benchmark files).
  A fresh process per training pays torch's cold start partly inside the function.
- *wall per extra training*: (wall of the {n_tiny}-training sweep - wall of the
  {n_small}-training sweep) / {n_tiny - n_small}: what one more training adds.
- *overhead per training*: that minus one warm training's compute (from local-threads).
  Values near zero (also slightly negative ones) mean the overhead is below the run-to-run
  noise of the wall times (about +-0.2 s per training here): a warm in-process training
  costs milliseconds beyond its compute.
- *results = local*: the collected metrics table equals the first backend's, without the
  wall-time/device/version columns.

{table}
"""
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
