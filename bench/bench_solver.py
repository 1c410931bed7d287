"""Benchmark the exact grouping solve on planted instances (pipeline/selection/instances.py).

Instances: n tasks with full and half single-task networks plus every pair (and every triple),
Standley's unit costs; 9 budgets spread from the cheapest cover ceil(n / max order) to n. Per
instance it times BudgetSolver (dominance, cover bound, warm starts, integral budget) per
budget, then PlainSolver (the bare formulation) on the same budgets under a time cap, and checks
that both optima agree. Prints a Markdown table with the machine and its load average (the
machine may be shared: read the times with it).

    nice -n 5 .venv/bin/python bench/bench_solver.py [--cap 120] [--only 50t]

``--whole`` times the whole ``taskgroup solve-external`` instead (every method and baseline,
the outputs, the imports: one fresh process) on the planted instances written as external
results: val = planted loss, test = val * U(0.95, 1.05), early = val * U(1.0, 1.2); budgets
1..5 by halves (the config default) for 12 tasks, spread_budgets for the others. ``--keep DIR``
keeps the outputs (to compare answers between versions). ``--command select`` runs
``taskgroup select`` on the same instance written as collected sweep metrics (5 epochs; ESA's
epoch 1 scores early_loss, the last val/test_loss).

    nice -n 19 .venv/bin/python bench/bench_solver.py --whole --only 12t 30t [--repeat 3]

``--whole --only 27L``: issue 20's shape, 27 tasks with singles, pairs, 2,806 random task sets
of 9-17 tasks and the all-task network (3,185 networks, cost 1 each; instances.large_networks),
budgets 1, 2, 3, 4, 5, 6, 8, 10. The table adds CPU seconds (less sensitive to a shared
machine than wall time) and per method how many budgets were proven optimal.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import highspy

from pipeline.selection.instances import large_networks, planted, spread_budgets
from pipeline.selection.solver import BudgetSolver, InfeasibleBudget, PlainSolver

CASES = {
    "12t": (12, (2, 3)),
    "30t": (30, (2, 3)),
    "50t": (50, (2, 3)),
    "100p": (100, (2,)),
    "200p": (200, (2,)),
}
# Issue 20's shape (--whole only): 27 tasks, singles, pairs, 2,806 sets of 9-17 tasks and the
# all-task network (3,185 networks, cost 1 each), budgets 1-10.
LARGE = {"27L": (27, [1, 2, 3, 4, 5, 6, 8, 10])}


def timed(solver_cls, loss, cost, budgets, cap=None, **kw):
    """(build seconds, per-budget seconds, objectives, gaps); stops once ``cap`` is spent."""
    start = time.perf_counter()
    solver = solver_cls(loss, cost, **kw)
    build = time.perf_counter() - start
    per, objectives, gaps = [], [], []
    for budget in budgets:
        left = None if cap is None else cap - (time.perf_counter() - start)
        if left is not None and left <= 0:
            per.append(None)
            objectives.append(None)
            gaps.append(None)
            continue
        solver.time_limit = left
        t0 = time.perf_counter()
        try:
            solution = solver.solve(budget)
            objectives.append(solution.objective)
            gaps.append(solution.gap)
        except InfeasibleBudget:
            objectives.append(float("inf"))
            gaps.append(0.0)
        except RuntimeError:  # the cap ran out before HiGHS found any solution
            per.append(None)
            objectives.append(None)
            gaps.append(None)
            continue
        per.append(time.perf_counter() - t0)
    return solver, build, per, objectives, gaps


def capped_cell(build: float, per: list, cap: float) -> str:
    """Total seconds, or how many budgets were solved before the cap ran out."""
    total = build + sum(p for p in per if p is not None)
    if any(p is None for p in per) or total >= cap:
        return f"> {cap:g} s ({sum(p is not None for p in per)} of {len(per)} budgets)"
    return f"{total:.2f} s"


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            line.split(":", 1)[1].strip()
            for line in out.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} vCPUs"


def external_frame(n_task: int, orders: tuple[int, ...], seed: int = 0):
    """The planted instance as an external results table (module doc)."""
    import numpy as np
    import pandas as pd

    loss, cost = (
        large_networks(n_task, seed=seed) if orders is None else planted(n_task, orders, seed=seed)
    )
    rng = np.random.default_rng(seed + 1)
    tasks = [f"t{t:02d}" for t in range(n_task)]
    rows = []
    for n in range(loss.shape[0]):
        members = np.flatnonzero(~np.isnan(loss[n]))
        size = "half" if cost[n] == 0.5 else "full"
        name = "+".join(tasks[t] for t in members) + f"@{size}"
        for t in members:
            val = float(loss[n, t])
            rows.append(
                (
                    name,
                    float(cost[n]),
                    tasks[t],
                    size,
                    val,
                    val * rng.uniform(0.95, 1.05),
                    val * rng.uniform(1.0, 1.2),
                )
            )
    return pd.DataFrame(
        rows, columns=["network", "cost", "task", "size", "val_loss", "test_loss", "early_loss"]
    )


def metrics_table(n_task: int, orders: tuple[int, ...], seed: int = 0, epochs: int = 5):
    """The same instance as collected sweep metrics (METRICS schema) for ``taskgroup select``:
    val and test losses per epoch, epoch 1 (ESA's at 0.2 of 5) scoring early_loss and the last
    epoch val/test_loss, the epochs between interpolated."""
    import pandas as pd
    import pyarrow as pa

    from pipeline.schema import METRICS

    frame = external_frame(n_task, orders, seed)
    rows = []
    for r in frame.itertuples(index=False):
        tasks = r.network.split("@")[0].split("+")
        for epoch in range(1, epochs + 1):
            w = (epoch - 1) / (epochs - 1)
            val = r.early_loss + w * (r.val_loss - r.early_loss)
            for split, value in (("val", val), ("test", val * r.test_loss / r.val_loss)):
                rows.append(
                    dict(
                        dataset="planted",
                        network=r.network,
                        tasks=tasks,
                        n_tasks=len(tasks),
                        size=r.size,
                        width=64 if r.size == "full" else 45,
                        cost=r.cost,
                        macs=1000,
                        architecture="mlp",
                        weighting="equal",
                        seed=0,
                        task=r.task,
                        task_type="regression",
                        split=split,
                        epoch=epoch,
                        metric="loss",
                        value=float(value),
                        n_labelled=10,
                        status="ok",
                        diverged_epoch=None,
                        epochs=epochs,
                        wall_time_s=0.1,
                        device="cpu",
                        config_hash=r.network,
                        versions="{}",
                    )
                )
    return pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False), METRICS


def whole(keys: list[str], repeat: int, keep: str | None, seed: int, command: str) -> None:
    """Wall time of ``python -m pipeline solve-external`` (or ``select`` over the same instance
    as sweep metrics) per instance (module doc)."""
    print(
        f"Python {platform.python_version()}, {machine()}; "
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; seed {seed}\n"
    )
    print(
        "| instance | networks | budgets | wall (s) per run | CPU (s) per run "
        "| load avg (1 min) per run | OS / ESA / HOA: feasible budgets proven optimal (max gap) |"
    )
    print("|---|---:|---|---|---|---|---|")
    root = Path(__file__).resolve().parent.parent
    for key in keys:
        if key in LARGE:
            n_task, budgets = LARGE[key]
            orders = None
        else:
            n_task, orders = CASES[key]
            budgets = (
                [1 + 0.5 * i for i in range(9)]
                if n_task == 12
                else spread_budgets(n_task, max(orders))
            )
        frame = external_frame(n_task, orders, seed)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{key}.parquet"
            if command == "select":
                from pipeline.schema import write_table

                table, schema = metrics_table(n_task, orders, seed)
                write_table(table, path, schema)
            else:
                frame.to_parquet(path, index=False)
            walls, cpus, loads, gaps = [], [], [], []
            for r in range(repeat):
                out = Path(keep) / key if keep else Path(tmp) / f"out{r}"
                source = ["select", "--metrics"] if command == "select" else ["solve-external"]
                cmd = [
                    sys.executable,
                    "-m",
                    "pipeline",
                    *source,
                    str(path),
                    "--configfile",
                    "",
                    "--out",
                    str(out),
                    "--budgets",
                    ",".join(f"{b:g}" for b in budgets),
                ]
                t0 = time.perf_counter()
                c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                subprocess.run(cmd, check=True, cwd=root, stdout=subprocess.DEVNULL)
                walls.append(time.perf_counter() - t0)
                c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus.append(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime)
                loads.append(os.getloadavg()[0])
                gaps.append(_gaps(out / "groupings.parquet"))
        shape = (
            "networks of 1-27 tasks" if orders is None else "triples" if 3 in orders else "pairs"
        )
        label = f"{n_task} tasks, {shape} ({command})"
        print(
            f"| {label} | {frame['network'].nunique():,} | {len(budgets)} "
            f"({budgets[0]:g}..{budgets[-1]:g}) | {' '.join(f'{w:.2f}' for w in walls)} | "
            f"{' '.join(f'{c:.1f}' for c in cpus)} | "
            f"{' '.join(f'{x:.2f}' for x in loads)} | {'; '.join(gaps) or '—'} |",
            flush=True,
        )


def _gaps(path: Path) -> str:
    """Per method, how many budgets are proven optimal, and the largest gap of the rest."""
    import pandas as pd

    frame = pd.read_parquet(path).groupby(["selection_method", "budget"]).first().reset_index()
    parts = []
    for method in ("optimal", "esa", "hoa"):
        rows = frame[(frame["selection_method"] == method) & (frame["status"] != "infeasible")]
        proven = int(((rows["status"] == "ok") & (rows["gap"] == 0)).sum())
        worst = rows["gap"].max()
        parts.append(f"{proven}/{len(rows)}" + (f" ({worst:.2%})" if worst > 0 else ""))
    return " / ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cap", type=float, default=120.0, help="plain MILP time cap (s)")
    parser.add_argument("--only", nargs="*", default=list(CASES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--whole", action="store_true", help="time solve-external end to end")
    parser.add_argument("--repeat", type=int, default=1, help="--whole: runs per instance")
    parser.add_argument("--keep", help="--whole: write the outputs under this directory")
    parser.add_argument(
        "--command",
        choices=["solve-external", "select"],
        default="solve-external",
        help="--whole: the subcommand (select: the instance as collected sweep metrics)",
    )
    args = parser.parse_args()
    if args.whole:
        whole(args.only, args.repeat, args.keep, args.seed, args.command)
        return
    print(
        f"HiGHS {highspy._Highs().version()}, Python {platform.python_version()}, {machine()}; "
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; seed {args.seed}\n"
    )
    print(
        "| instance | networks | kept after dominance | budgets | fast: build | fast: per budget "
        "(s) | fast: total | facility-location model + levers (cap) | plain MILP total (cap) "
        "| same optima | load avg after |"
    )
    print("|---|---:|---:|---|---:|---|---:|---:|---:|---|---|")
    for key in args.only:
        n_task, orders = CASES[key]
        loss, cost = planted(n_task, orders, seed=args.seed)
        budgets = spread_budgets(n_task, max(orders))
        fast, build, per, fast_obj, fast_gap = timed(BudgetSolver, loss, cost, budgets)
        kept = fast.kept.size
        fast_total = build + sum(per)
        _, fbuild, fper, _, _ = timed(
            BudgetSolver, loss, cost, budgets, cap=args.cap, subsets=False
        )
        _, pbuild, pper, plain_obj, plain_gap = timed(
            PlainSolver, loss, cost, budgets, cap=args.cap
        )
        plain_done = all(p is not None for p in pper) and all(g == 0.0 for g in fast_gap)
        # Compared where both are proven: the plain solve may stop at the cap with a worse one.
        agree = all(
            p is None or g != 0.0 or fg != 0.0 or f == p or abs(f - p) <= 1e-7 * max(1.0, abs(f))
            for f, p, g, fg in zip(fast_obj, plain_obj, plain_gap, fast_gap)
        )
        plain_cell = capped_cell(pbuild, pper, args.cap)
        facility_cell = capped_cell(fbuild, fper, args.cap)
        label = f"{n_task} tasks + {'triples' if 3 in orders else 'pairs'}"
        print(
            f"| {label} | {len(cost):,} | {kept:,} | "
            f"{len(budgets)} ({budgets[0]:g}..{budgets[-1]:g}) | {build:.2f} | "
            f"{' '.join(f'{t:.2f}' for t in per)} | **{fast_total:.2f} s** | "
            f"{facility_cell} | {plain_cell} | "
            f"{'yes' if agree else 'NO'}{'' if plain_done else ' (where both finished)'} | "
            f"{os.getloadavg()[0]:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
