"""Verify the estimating strategies against the exhaustive answer (issue #10).

Each scenario runs the real workflow once per strategy, each in its own results folder (no
reuse between strategies, so each one's compute is its own):

* ``synthetic12``: 12 regression tasks in 4 planted clusters of 3 (``c<cluster>t<k>``);
  exhaustive = every single (2 sizes), pair, triple and the all-in-one network, so the
  planted groups are among its networks.
* ``synthetic30``: 30 tasks in 15 planted clusters of 2; exhaustive = singles and pairs (all
  triples would be 4,060 more networks), again holding the planted groups.
* ``tox21``: the 12 Tox21 tasks, seeds 0, 1, 2; exhaustive = singles, pairs, triples.

Reported per strategy: networks trained, compute (sum over its networks and seeds of the
in-process training seconds, TAG's estimation run with its lookahead included), the OS test
total at each budget and its gap to the exhaustive one; on synthetic data the adjusted Rand
index of the planted clusters against (a) the OS grouping at budget = number of clusters
(each task labelled by the network serving it) and (b) TAG's own selection at that many
groups; on Tox21 the share of the exhaustive optimum's gain over the all-in-one network that
each strategy recovers.

    .venv/bin/python bench/bench_strategies.py [--scenarios synthetic12 synthetic30 tox21]
        [--strategies exhaustive tag pairs] [--cores 2] [--out bench/out/strategies]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import yaml
from sklearn.metrics import adjusted_rand_score

REPO = Path(__file__).resolve().parent.parent

SYNTHETIC = {"name": "synthetic", "rows": 2000, "features": 32, "similarity": 0.9,
             "noise": 0.1, "task_type": "regression", "seed": 0}  # fmt: skip
SMALL_TRAINING = {"epochs": 10, "batch_size": 128, "lr": 0.003}

SCENARIOS: dict[str, dict] = {
    "synthetic12": {
        "config": {
            "dataset": {**SYNTHETIC, "clusters": 4, "tasks_per_cluster": 3},
            "model": {"hidden": [64, 64]},
            "training": SMALL_TRAINING,
            "sweep": {"orders": [1, 2, 3], "seeds": [0]},
            "selection": {"budgets": [1, 2, 3, 4, 6, 8, 12]},
        },
        "clusters": 4,
    },
    "synthetic30": {
        "config": {
            "dataset": {**SYNTHETIC, "clusters": 15, "tasks_per_cluster": 2},
            "model": {"hidden": [64, 64]},
            "training": SMALL_TRAINING,
            "sweep": {"orders": [1, 2], "seeds": [0]},
            "selection": {"budgets": [1, 2, 4, 8, 12, 15, 20, 30]},
        },
        "clusters": 15,
    },
    "tox21": {
        "config": {
            "dataset": {"name": "tox21"},
            "sweep": {"orders": [1, 2, 3], "seeds": [0, 1, 2]},
            "selection": {"budgets": [1, 2, 3, 4, 5, 6, 8, 10, 12]},
        },
        "clusters": None,
    },
}


def run(scenario: str, strategy: str, out: Path, cores: int, keep: bool) -> tuple[Path, float]:
    workdir = out / scenario / strategy
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    config = json.loads(json.dumps(SCENARIOS[scenario]["config"]))
    config["sweep"]["strategy"] = strategy
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
        "--cores", str(cores), "--quiet",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(cmd, cwd=workdir, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return workdir / "results", time.perf_counter() - started


def compute_seconds(results: Path) -> tuple[int, float, float, float]:
    """Networks x seeds, their in-process training seconds, the seconds of those with 2+
    tasks (every strategy trains the same singles for the baselines), and the total in units of
    the run's mean full-size single-task training: load on a shared machine inflates seconds
    run by run, this unit cancels it."""
    columns = ["network", "seed", "n_tasks", "size", "wall_time_s"]
    table = pq.read_table(results / "metrics.parquet", columns=columns).to_pandas()
    per_net = table.groupby(["network", "seed"]).agg(
        n_tasks=("n_tasks", "first"), size=("size", "first"), seconds=("wall_time_s", "max")
    )
    multi = per_net[per_net["n_tasks"] > 1]["seconds"].sum()
    single = per_net[(per_net["n_tasks"] == 1) & (per_net["size"] == "full")]["seconds"].mean()
    total = float(per_net["seconds"].sum())
    return int(len(per_net)), total, float(multi), total / single


def os_totals(results: Path) -> pd.DataFrame:
    frame = pq.read_table(results / "groupings.parquet").to_pandas()
    # Results written before the column was renamed still read.
    frame = frame.rename(columns={"method": "selection_method"})
    frame = frame[frame["status"] == "ok"]
    return frame.groupby(["selection_method", "budget"])[["test_total", "test_total_std"]].first()


def planted(tasks: list[str]) -> list[str]:
    return [t.split("t")[0] for t in tasks]


def os_ari(results: Path, budget: float) -> float:
    frame = pq.read_table(results / "groupings.parquet").to_pandas()
    # Results written before the column was renamed still read.
    frame = frame.rename(columns={"method": "selection_method"})
    rows = frame[(frame["selection_method"] == "optimal") & (frame["budget"] == budget)]
    rows = rows.dropna(subset=["task"]).sort_values("task")
    if rows.empty:
        return float("nan")
    return adjusted_rand_score(planted(list(rows["task"])), list(rows["network"]))


def tag_ari(results: Path, groups: int) -> float:
    path = next((results / "groups").glob("*.json"), None)
    if path is None:
        return float("nan")
    decided = json.loads(path.read_text())
    if "groupings" not in decided:
        return float("nan")
    grouping = next((g for g in decided["groupings"] if g["max_groups"] == groups), None)
    if grouping is None:
        return float("nan")
    serving = grouping["serving_group"]
    tasks = sorted(serving)
    return adjusted_rand_score(planted(tasks), [serving[t] for t in tasks])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    parser.add_argument("--strategies", nargs="+", default=["exhaustive", "tag", "pairs"])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "strategies")
    parser.add_argument(
        "--keep", action="store_true", help="finish earlier runs in --out instead of restarting"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="tabulate the results already in --out"
    )
    args = parser.parse_args()
    lines = []
    for scenario in args.scenarios:
        clusters = SCENARIOS[scenario]["clusters"]
        measured = {}
        for strategy in args.strategies:
            if args.report_only:
                results, wall = args.out / scenario / strategy / "results", float("nan")
                if not (results / "groupings.parquet").exists():
                    continue
            else:
                results, wall = run(scenario, strategy, args.out, args.cores, args.keep)
            networks, seconds, multi, units = compute_seconds(results)
            measured[strategy] = (
                results,
                wall,
                networks,
                (seconds, multi, units),
                os_totals(results),
            )
            print(f"{scenario} {strategy}: {networks} networks, {seconds:.0f} s training, "
                  f"{wall:.0f} s wall", flush=True)  # fmt: skip
        if not measured:
            continue
        reference = measured.get("exhaustive")
        lines += [f"\n### {scenario}\n"]
        header = (
            "| strategy | networks (x seeds) | compute (s) | multi-task compute (s) | "
            "compute in single trainings | compute vs exhaustive (single-training units) |"
        )
        if clusters:
            header += f" ARI, OS at budget {clusters} | ARI, TAG selection at {clusters} groups |"
        lines += [header, "|" + "---|" * (header.count("|") - 1)]
        for strategy, (results, _, networks, (seconds, multi, units), _) in measured.items():
            share = units / reference[3][2] if reference else float("nan")
            row = (
                f"| {strategy} | {networks} | {seconds:.0f} | {multi:.0f} | {units:.0f} | "
                f"{share:.1%} |"
            )
            if clusters:
                row += f" {os_ari(results, clusters):.2f} | {tag_ari(results, clusters):.2f} |"
            lines.append(row)
        if reference is None:
            continue
        ref = reference[4]
        budgets = sorted(ref.loc["optimal"].index) if "optimal" in ref.index else []
        aio = ref.loc["all_in_one"]["test_total"] if "all_in_one" in ref.index else None
        lines += ["", "OS test total per budget (lower is better); in brackets the gap to the "
                  "exhaustive optimum" + (", and the share of its gain over all-in-one recovered"
                                          if scenario == "tox21" else "") + ":", ""]  # fmt: skip
        lines.append("| budget | " + " | ".join(measured) + " |")
        lines.append("|---:|" + "---:|" * len(measured))
        for budget in budgets:
            best = ref.loc[("optimal", budget), "test_total"]
            cells = []
            for strategy, (_, _, _, _, totals) in measured.items():
                if ("optimal", budget) not in totals.index:
                    cells.append("—")
                    continue
                total, std = totals.loc[("optimal", budget)]
                cell = f"{total:.4f}"
                if std == std and std is not None:
                    cell += f" ± {std:.4f}"
                if strategy != "exhaustive":
                    cell += f" ({(total - best) / best:+.2%}"
                    if scenario == "tox21" and aio is not None and budget in aio.index:
                        gain = aio.loc[budget] - best
                        if gain > 0:
                            cell += f"; {(aio.loc[budget] - total) / gain:.0%} of gain"
                    cell += ")"
                cells.append(cell)
            lines.append(f"| {budget:g} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    (args.out / "RESULTS.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
