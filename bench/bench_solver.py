"""Benchmark the exact grouping solve (HiGHS MIP) on random instances of the sizes that matter.

* 12 tasks: singles at two sizes (cost 0.5 and 1), 66 pairs, 220 triples and the all-task
  network (as the default sweep trains them), random losses, 9 budgets 1..5.
* 30 tasks: singles at two sizes + 435 pairs, budgets from the cheapest cover (15) to 30.

Each row is the total wall time of building the model once and solving every budget, median of
three random instances. Prints a Markdown table (copied to bench/RESULTS_solver.md).

    python bench/bench_solver.py
"""

from __future__ import annotations

import itertools
import platform
import statistics
import time

import highspy
import numpy as np

from pipeline.selection.solver import BudgetSolver, InfeasibleBudget


def instance(n_task: int, orders: list[int], all_in_one: bool, rng: np.random.Generator):
    rows, cost = [], []
    for t in range(n_task):
        for c in (0.5, 1.0):
            row = np.full(n_task, np.nan)
            row[t] = rng.uniform(0.5, 1.0) * (1.15 if c == 0.5 else 1.0)
            rows.append(row)
            cost.append(c)
    subsets = [s for k in orders for s in itertools.combinations(range(n_task), k)]
    if all_in_one:
        subsets.append(tuple(range(n_task)))
    for subset in subsets:
        row = np.full(n_task, np.nan)
        row[list(subset)] = rng.uniform(0.4, 1.1, size=len(subset))
        rows.append(row)
        cost.append(1.0 + 0.0009 * (len(subset) - 1))  # an extra head per task
    return np.array(rows), np.array(cost)


def run(n_task, orders, all_in_one, budgets, repeats=3) -> tuple[int, float, float]:
    times, per_budget = [], []
    for seed in range(repeats):
        loss, cost = instance(n_task, orders, all_in_one, np.random.default_rng(seed))
        start = time.perf_counter()
        solver = BudgetSolver(loss, cost, tolerance=0.01)
        for budget in budgets:
            t0 = time.perf_counter()
            try:
                solver.solve(budget)
            except InfeasibleBudget:
                pass
            per_budget.append(time.perf_counter() - t0)
        times.append(time.perf_counter() - start)
    return len(cost), statistics.median(times), max(per_budget)


def main() -> None:
    cases = [
        (
            "12 tasks: 2x12 singles + 66 pairs + 220 triples + all-in-one",
            12,
            [2, 3],
            True,
            [1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5],
        ),
        ("30 tasks: 2x30 singles + 435 pairs", 30, [2], False, [15, 17.5, 20, 22.5, 25, 30]),
    ]
    print(
        f"HiGHS {highspy.Highs().version()}, Python {platform.python_version()}, "
        f"{platform.machine()}; median of 3 random instances\n"
    )
    print("| instance | networks | budgets | total time (build + all budgets) | slowest budget |")
    print("|---|---|---|---|---|")
    for name, n_task, orders, all_in_one, budgets in cases:
        n_net, total, slowest = run(n_task, orders, all_in_one, budgets)
        print(
            f"| {name} | {n_net} | {len(budgets)} ({budgets[0]:g}..{budgets[-1]:g}) | "
            f"{total:.3f} s | {slowest:.3f} s |"
        )


if __name__ == "__main__":
    main()
