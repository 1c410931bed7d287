"""Sweep strategies: which networks a sweep trains before it knows anything, and which it
decides to train once estimates are in (``sweep.strategy``).

* ``exhaustive``: every task set of ``sweep.orders`` (Standley et al. 2020). Nothing estimated.
* ``pairs``: singles and pairs; the networks of 3+ tasks that Standley's higher-order
  approximation (HOA) picks at some budget are then trained for real.
* ``tag``: singles and the all-in-one network, whose training records inter-task affinity with
  TAG's lookahead (Fifty et al. 2021); the groups TAG's selection picks for the budgets are then
  trained for real.
* ``sampled``: singles and ``sweep.sampled.subsets`` networks on random task subsets of
  ``sweep.sampled.size`` tasks; their losses give the higher-order affinity of Li, Ju, Sharma &
  Zhang (KDD 2023), and the groups selected on it are then trained for real.
* ``auto``: ``exhaustive`` up to ``sweep.auto_max_tasks`` tasks, ``tag`` above. At 16 tasks the
  exhaustive sweep is 16 x 2 singles + 120 pairs + 560 triples; TAG needs one training plus at
  most one network per group.

The second stage is a Snakemake checkpoint (rules/estimate.smk): the candidate groups are
decided at run time from the first stage's results, and the exact budgeted solve then runs over
measured results only.
"""

from __future__ import annotations

STRATEGIES = ("exhaustive", "pairs", "tag", "sampled")


def resolve_strategy(sweep: dict, n_tasks: int) -> str:
    strategy = sweep.get("strategy", "auto")
    if strategy == "auto":
        return "exhaustive" if n_tasks <= int(sweep.get("auto_max_tasks", 15)) else "tag"
    if strategy not in STRATEGIES:
        raise ValueError(
            f"config key sweep.strategy: unknown {strategy!r}; choices: auto, "
            + ", ".join(STRATEGIES)
        )
    return strategy


def first_stage_orders(sweep: dict) -> list[int]:
    """Task-set sizes trained before any estimate: all of ``sweep.orders`` when exhaustive."""
    strategy = sweep.get("strategy", "exhaustive")
    if strategy == "pairs":
        return [1, 2]
    if strategy in ("tag", "sampled"):
        return [1]
    return sorted(set(sweep["orders"]))


def default_subsets(n_tasks: int, size: int) -> int:
    """Twice the fewest subsets of ``size`` tasks that can hold every pair (each pair is then
    seen about twice), and at least one subset per task."""
    pairs = n_tasks * (n_tasks - 1) // 2
    per_subset = size * (size - 1) // 2
    return max(n_tasks, 2 * -(-pairs // per_subset))


def sampled_subsets(tasks: list[str], sweep: dict) -> list[tuple[str, ...]]:
    """The sampled strategy's task subsets, in dataset order, drawn deterministically."""
    from .affinity import sample_subsets

    options = sweep.get("sampled", {})
    size = int(options.get("size", 4))
    if size > len(tasks):
        raise ValueError(
            f"config key sweep.sampled.size: {size} tasks per subset, but only {len(tasks)} tasks"
        )
    m = options.get("subsets") or default_subsets(len(tasks), size)
    try:
        drawn = sample_subsets(
            tasks, size, int(m), seed=int(options.get("seed", 0)),
            cover_pairs=bool(options.get("cover_pairs", True)),
        )  # fmt: skip
    except ValueError as err:
        raise ValueError(f"config key sweep.sampled.subsets: {err}") from None
    return list(dict.fromkeys(drawn))


def trains_all_in_one(sweep: dict) -> bool:
    # TAG's estimation run is the all-in-one network: it is always trained.
    return sweep.get("strategy") == "tag" or bool(sweep.get("all_in_one", False))


def estimates(sweep: dict) -> bool:
    """Does the sweep decide a second stage of networks at run time?"""
    return sweep.get("strategy") in ("pairs", "tag", "sampled")
