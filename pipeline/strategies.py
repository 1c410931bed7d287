"""Sweep strategies: which networks a sweep trains before it knows anything, and which it
decides to train once estimates are in (``sweep.strategy``).

* ``exhaustive``: every task set of ``sweep.orders`` (Standley et al. 2020). Nothing estimated.
* ``pairs``: singles and pairs; the networks of 3+ tasks that Standley's higher-order
  approximation (HOA) picks at some budget are then trained for real.
* ``tag``: singles and the all-in-one network, whose training records inter-task affinity with
  TAG's lookahead (Fifty et al. 2021); the groups TAG's selection picks for the budgets are then
  trained for real.
* ``auto``: ``exhaustive`` up to ``sweep.auto_max_tasks`` tasks, ``tag`` above. At 16 tasks the
  exhaustive sweep is 16 x 2 singles + 120 pairs + 560 triples; TAG needs one training plus at
  most one network per group.

The second stage is a Snakemake checkpoint (rules/estimate.smk): the candidate groups are
decided at run time from the first stage's results, and the exact budgeted solve then runs over
measured results only.
"""

from __future__ import annotations

STRATEGIES = ("exhaustive", "pairs", "tag")


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
    if strategy == "tag":
        return [1]
    return sorted(set(sweep["orders"]))


def trains_all_in_one(sweep: dict) -> bool:
    # TAG's estimation run is the all-in-one network: it is always trained.
    return sweep.get("strategy") == "tag" or bool(sweep.get("all_in_one", False))


def estimates(sweep: dict) -> bool:
    """Does the sweep decide a second stage of networks at run time?"""
    return sweep.get("strategy") in ("pairs", "tag")
