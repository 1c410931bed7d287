"""Sweep-strategy registry: ``sweep.strategy`` -> a Strategy class (one file per method, each
citing its paper; the interface and the workflow's questions: ``base.py``).

* ``exhaustive``: every task set of ``sweep.orders`` (Standley et al. 2020). Nothing estimated.
* ``pairs``: singles and pairs; the 3+-task sets HOA picks are then trained.
* ``tag``: singles and the all-in-one network, whose training records TAG's inter-task
  affinity (Fifty et al. 2021); the groups TAG's selection picks for the budgets are trained.
* ``sampled``: singles and random task subsets; their losses give the higher-order affinity
  (Li et al. 2023), and the groups selected on it are trained.
* ``gradtag``: singles and the all-in-one network; every pair's fine-tuned losses estimated
  from projected gradients of its first epoch (Li, Sharma & Zhang 2024) give the affinity whose
  groups are trained.
* ``auto`` (the default, resolved by :func:`resolve_strategy`, the only place that knows it):
  ``exhaustive`` up to ``sweep.auto_max_tasks`` tasks, ``sampled`` up to
  ``sweep.auto_max_sampled_tasks``, ``gradtag`` above (``tag`` where gradtag does not apply).
  At 16 tasks the exhaustive sweep is 16 x 2 singles + 120 pairs + 560 triples.

Adding a strategy: one module with a :class:`Strategy` subclass, listed in ``STRATEGIES`` below,
its options under ``sweep.<name>`` in ``schemas/config.schema.yaml`` (docs/strategies.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import ESTIMATION_KINDS, Strategy
from .exhaustive import Exhaustive
from .gradtag import GradTag
from .groups import budget_groups, read_decided_groups
from .pairs import Pairs
from .sampled import Sampled, default_subsets, sampled_subsets
from .tag import Tag

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (Exhaustive, Pairs, Tag, Sampled, GradTag)
}

# The schema's default for sweep.strategy, resolved per number of tasks.
AUTO = "auto"
# What auto picks where its choice, gradtag, does not apply to the model or the tasks.
AUTO_FALLBACK = {"gradtag": "tag"}


def resolve_strategy(sweep: dict, n_tasks: int) -> str:
    """The strategy's name, ``auto`` resolved by the number of tasks and what each estimator
    costs, from bench/RESULTS_estimation.md (docs/strategies.md has the numbers): exhaustive
    up to sweep.auto_max_tasks tasks (every pair and triple measured); sampled up to
    sweep.auto_max_sampled_tasks (on Tox21 it ranks the measured pair gains at Spearman +0.84,
    tag at -0.05, gradtag at +0.09; its first stage grows with the pairs); gradtag above (one
    training plus seconds to minutes of estimation; it recovers planted groups better than tag
    and sampled). Where gradtag does not apply to the model or tasks, ``pipeline.config`` falls
    back to tag (:data:`AUTO_FALLBACK`). An unknown name is refused naming the key."""
    name = sweep.get("strategy") or AUTO
    if name == AUTO:
        if n_tasks <= int(sweep.get("auto_max_tasks", 15)):
            return "exhaustive"
        if n_tasks <= int(sweep.get("auto_max_sampled_tasks", 40)):
            return "sampled"
        return "gradtag"
    if name not in STRATEGIES:
        raise ValueError(
            f"config key sweep.strategy: unknown {name!r}; choices: {AUTO}, "
            + ", ".join(STRATEGIES)
        )
    return name


def build_strategy(sweep: dict, tasks: Sequence[str] | int | None = None) -> Strategy:
    """The strategy of ``sweep`` (its ``auto`` resolved over ``tasks``: the task list or their
    number; needed only when ``sweep.strategy`` is auto or missing)."""
    name = sweep.get("strategy") or AUTO
    if name == AUTO:
        if tasks is None:
            raise ValueError("config key sweep.strategy: auto needs the number of tasks")
        name = resolve_strategy(sweep, tasks if isinstance(tasks, int) else len(tasks))
    resolve_strategy({**sweep, "strategy": name}, 0)  # refuses an unknown name, naming the key
    return STRATEGIES[name](sweep)


def estimates(sweep: dict) -> bool:
    """Does the (resolved) sweep decide a second stage of networks at run time?"""
    name = sweep.get("strategy")
    return name in STRATEGIES and STRATEGIES[name].estimates


__all__ = [
    "AUTO",
    "AUTO_FALLBACK",
    "ESTIMATION_KINDS",
    "STRATEGIES",
    "Strategy",
    "budget_groups",
    "build_strategy",
    "default_subsets",
    "estimates",
    "read_decided_groups",
    "resolve_strategy",
    "sampled_subsets",
]
