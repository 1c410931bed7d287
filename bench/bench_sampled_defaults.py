"""Measure the defaults of ``sweep.strategy: sampled`` (issue #11 item 3): subset size k
(``sweep.sampled.size``) and number of subsets m (``sweep.sampled.subsets``).

No Snakemake: for each grid point the subsets are drawn with the workflow's own
:func:`pipeline.strategies.sampled_subsets` (so ``cover_pairs`` and the default-m rule are the
real ones), each subset network is trained in-process with :func:`pipeline.training.train_network`
on the workflow's network spec (:func:`pipeline.sweep.network_spec`), its METRICS table is
written to Parquet, and the groups are decided by :func:`pipeline.strategies.sampled.sampled_groups`
on those files, exactly as the ``groups`` checkpoint does. A subset network is trained once
per (scenario, seed, subset) and cached under ``--out``: grid points that draw the same subset
share it (each point still counts it in its own compute).

Scored: the adjusted Rand index between the planted clusters (task ``c<cluster>t<k>``) and the
selection at the planted number of groups (as ``bench_strategies.tag_ari``); compute: the
number of subset networks, their task-slots (m x k, the heads trained) and the summed
in-process training seconds (the singles every strategy trains are left out: they are the same
for every grid point).

Grid: k in --sizes (k <= n/2 only) x m in {half, the default rule, twice} (default rule =
:func:`pipeline.strategies.default_subsets`). With cover_pairs true the code refuses m below
the greedy pair cover; a point asking for less uses the smallest legal m (marked "raised").
Seed s is both the split seed, the training seed and the sampling seed.

    PYTHONPATH=. nice -n 19 .venv/bin/python bench/bench_sampled_defaults.py \
        [--scenarios synthetic12 synthetic12x3 synthetic30] [--sizes 3 4 6 8] [--seeds 0 1]
        [--epochs 5] [--out bench/out/sampled_defaults]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import pyarrow.parquet as pq
from sklearn.metrics import adjusted_rand_score

REPO = Path(__file__).resolve().parent.parent

SYNTHETIC = {"name": "synthetic", "rows": 2000, "features": 32, "similarity": 0.9,
             "noise": 0.1, "task_type": "regression", "seed": 0}  # fmt: skip
SCENARIOS = {
    "synthetic12": {"clusters": 4, "tasks_per_cluster": 3},  # as bench_strategies
    "synthetic12x3": {"clusters": 3, "tasks_per_cluster": 4},
    "synthetic30": {"clusters": 15, "tasks_per_cluster": 2},  # as bench_strategies
}


def base_config(scenario: str, seed: int, epochs: int) -> dict:
    from pipeline.config import resolve_config

    return resolve_config({
        "dataset": {**SYNTHETIC, **SCENARIOS[scenario]},
        "model": {"hidden": [64, 64]},
        "training": {"epochs": epochs, "batch_size": 128, "lr": 0.003},
        "split": {"seed": seed},
        "sweep": {"strategy": "sampled", "seeds": [seed]},
    })  # fmt: skip


def legal_subsets(tasks, size: int, wanted: int, seed: int) -> tuple[int, bool]:
    """``wanted`` if the pair cover fits in it, else the smallest m the code accepts."""
    from pipeline.strategies import sampled_subsets

    m = wanted
    while True:
        try:
            sampled_subsets(list(tasks), {"sampled": {"size": size, "subsets": m, "seed": seed}})
            return m, m != wanted
        except ValueError:
            m += 1


def train_cached(config, data, labels, subset, seed, cache: Path, device) -> tuple[Path, float]:
    from pipeline.sweep import network_spec
    from pipeline.training import train_network

    path = cache / f"seed{seed}" / ("+".join(subset) + ".parquet")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        spec = network_spec(config, tuple(subset), "full", seed)
        table = train_network(data, labels, spec, device)
        pq.write_table(table, path)
    seconds = pq.read_table(path, columns=["wall_time_s"]).column(0).to_pylist()
    return path, float(max(seconds))


def ari_at(decided: dict, groups: int) -> float:
    grouping = next(g for g in decided["groupings"] if g["max_groups"] == groups)
    serving = grouping["serving_group"]
    tasks = sorted(serving)
    return adjusted_rand_score([t.split("t")[0] for t in tasks], [serving[t] for t in tasks])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", nargs="+", default=["synthetic12", "synthetic12x3"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[3, 4, 6, 8])
    parser.add_argument("--factors", nargs="+", type=float, default=[0.5, 1.0, 2.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "sampled_defaults")
    args = parser.parse_args()

    import torch

    from pipeline.datasets import load_dataset
    from pipeline.split import make_split
    from pipeline.strategies import default_subsets, sampled_subsets
    from pipeline.strategies.sampled import sampled_groups

    torch.set_num_threads(1)
    device = torch.device("cpu")
    started = time.perf_counter()
    load = os.getloadavg()
    rows = []
    for scenario in args.scenarios:
        for seed in args.seeds:
            config = base_config(scenario, seed, args.epochs)
            data = load_dataset(config["dataset"])
            labels = make_split(data.n_rows, config["split"]["fractions"], seed)
            tasks = list(data.task_names)
            n, clusters = len(tasks), SCENARIOS[scenario]["clusters"]
            cache = args.out / scenario / f"e{args.epochs}"
            for size in [k for k in args.sizes if k <= n // 2]:
                rule = default_subsets(n, size)
                for factor in args.factors:
                    wanted = max(1, round(rule * factor))
                    m, raised = legal_subsets(tasks, size, wanted, seed)
                    sweep = {"sampled": {"size": size, "subsets": m, "seed": seed}}
                    subsets = sampled_subsets(tasks, sweep)
                    files, seconds = [], 0.0
                    for subset in subsets:
                        path, s = train_cached(config, data, labels, subset, seed, cache, device)
                        files.append(str(path))
                        seconds += s
                    decided = sampled_groups(files, tasks, [clusters])
                    rows.append({
                        "scenario": scenario, "n": n, "clusters": clusters, "seed": seed,
                        "k": size, "factor": factor, "wanted": wanted, "m": m,
                        "raised": raised, "networks": len(subsets),
                        "slots": sum(len(s) for s in subsets), "seconds": seconds,
                        "ari": ari_at(decided, clusters),
                    })  # fmt: skip
                    r = rows[-1]
                    print(f"{scenario} seed {seed} k={size} m={m} ({factor:g}x rule {rule}"
                          f"{', raised' if raised else ''}): ARI {r['ari']:.2f}, "
                          f"{r['networks']} nets, {seconds:.0f} s", flush=True)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
    print(report(rows, args, load, time.perf_counter() - started))


def report(rows: list[dict], args, load, wall: float) -> str:
    import torch

    lines = [
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, "
        f"torch {torch.__version__} on CPU with 1 thread, nice 19; load average at start "
        f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}; wall {wall:.0f} s (cached networks are "
        f"not retrained). Epochs {args.epochs}, seeds {args.seeds}.",
        "",
        "ARI: selection at the planted number of groups vs the planted clusters (mean over "
        "seeds, then per seed). networks: subset networks m (per seed; the singles, the same "
        "for every point, are left out); task-slots: m x k; seconds: summed in-process "
        "training seconds of the subset networks, mean over seeds.",
    ]
    for scenario in dict.fromkeys(r["scenario"] for r in rows):
        sub = [r for r in rows if r["scenario"] == scenario]
        title = f"### {scenario} (n = {sub[0]['n']}, {sub[0]['clusters']} planted clusters)"
        header = "| k | m rule | m asked | m used | networks | task-slots | seconds | ARI mean | "
        lines += [
            "",
            title,
            "",
            header + "ARI per seed |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        keys = list(dict.fromkeys((r["k"], r["factor"]) for r in sub))
        for k, factor in keys:
            point = [r for r in sub if r["k"] == k and r["factor"] == factor]
            used = sorted({r["m"] for r in point})
            asked = sorted({r["wanted"] for r in point})
            label = {0.5: "half", 1.0: "**default**", 2.0: "twice"}.get(factor, f"{factor:g}x")
            raised = " (raised)" if any(r["raised"] for r in point) else ""
            lines.append(
                f"| {k} | {label} | {'/'.join(map(str, asked))} | "
                f"{'/'.join(map(str, used))}{raised} | "
                f"{statistics.mean(r['networks'] for r in point):.0f} | "
                f"{statistics.mean(r['slots'] for r in point):.0f} | "
                f"{statistics.mean(r['seconds'] for r in point):.0f} | "
                f"{statistics.mean(r['ari'] for r in point):.2f} | "
                + " / ".join(f"{r['ari']:.2f}" for r in point)
                + " |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
