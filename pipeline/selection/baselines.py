"""Baselines on the same budgets as the solve: all-in-one, independent, random and worst.

* all-in-one: the one network with every task (the best on validation if several sizes fit).
* independent: one single-task network per task, all of one size: the most expensive size
  that fits (all half-size networks from budget T/2, all full-size from T, as in Standley's
  figures).
* independent_mix: one single-task network per task, sizes mixed as the budget allows, chosen
  exactly on validation by the solver restricted to single-task networks.
* random: Standley's sampler (main.cpp, do_one_random): take networks in random order, keeping
  each that still fits, until the unspent budget is below the cheapest network; keep draws that
  cover every task. Reported as the mean test total over ``samples`` accepted draws.
* worst: the maximum over the same sampler's support, computed exactly (solver.worst_cover)
  rather than as the max of millions of draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .candidates import Candidates
from .solver import Solution, solve_budgets, task_cost_bound


def all_in_one(cand: Candidates, budget: float, tolerance: float) -> tuple[int, ...] | None:
    """The all-task network that fits the budget with the least validation total, or None."""
    fits = (
        cand.all_in_one() & cand.trained & cand.usable(cand.val) & (cand.cost <= budget + tolerance)
    )
    nets = np.flatnonzero(fits)
    if nets.size == 0:
        return None
    return (int(nets[np.argmin(np.nansum(cand.val[nets], axis=1))]),)


def independent(cand: Candidates, budget: float, tolerance: float) -> tuple[int, ...] | None:
    """The most expensive one-size set of single-task networks within the budget, or None."""
    nets = np.flatnonzero(cand.singles() & cand.trained & cand.usable(cand.val))
    # Sizes by label; external results may have none, then by cost.
    kinds: dict[object, list[int]] = {}
    for n in nets:
        kind = cand.size[n] if cand.size[n] is not None else round(float(cand.cost[n]), 6)
        kinds.setdefault(kind, []).append(int(n))
    best: tuple[float, float, tuple[int, ...]] | None = None
    for group in kinds.values():
        per_task = {}
        for n in group:
            t = int(np.flatnonzero(cand.members[n])[0])
            # Several networks of one size for a task (should not happen): the best on val.
            if t not in per_task or cand.val[n, t] < cand.val[per_task[t], t]:
                per_task[t] = n
        if len(per_task) < len(cand.tasks):
            continue
        chosen = tuple(sorted(per_task.values()))
        total_cost = float(cand.cost[list(chosen)].sum())
        if total_cost > budget + tolerance:
            continue
        val = float(np.nansum(cand.val[list(chosen)]))
        key = (total_cost, -val, chosen)
        if best is None or key[:2] > best[:2]:
            best = key
    return None if best is None else best[2]


def independent_mix(
    cand: Candidates,
    budgets: list[float],
    tolerance: float,
) -> list[Solution | None]:
    """Per budget, the best mix of single-task networks (indices into ``cand``), or None."""
    nets = np.flatnonzero(cand.singles() & cand.trained & cand.usable(cand.val))
    covered = cand.members[nets].any(axis=0)
    if not covered.all():
        return [None] * len(budgets)
    solutions = solve_budgets(cand.val[nets], cand.cost[nets], budgets, tolerance)
    return [None if s is None else _reindex(s, nets) for s in solutions]


def _reindex(solution: Solution, nets: np.ndarray) -> Solution:
    return Solution(
        budget=solution.budget,
        chosen=tuple(int(nets[i]) for i in solution.chosen),
        assignment=tuple(int(nets[i]) for i in solution.assignment),
        objective=solution.objective,
        cost=solution.cost,
    )


@dataclass(frozen=True)
class RandomResult:
    per_task: np.ndarray  # (T,) mean over accepted draws of each task's best loss
    total: float
    samples: int  # accepted draws (fewer than asked when covers are rare)
    attempts: int


def max_draws(samples: int, n_net: int, per_sample: int = 50) -> int:
    """How many random draws random_choice tries at most. Draws cost time in proportion to the
    networks they walk: beyond a few hundred networks fewer are tried (a fixed number, so the
    results do not depend on the machine's speed)."""
    return min(samples * per_sample, max(samples, 20_000_000 // max(n_net, 1)))


def random_choice(
    loss: np.ndarray,
    cost: np.ndarray,
    budget: float,
    tolerance: float,
    samples: int,
    seed: int,
    max_attempts_per_sample: int = 50,
) -> RandomResult | None:
    """Mean test loss of Standley's random feasible choices (module doc); None if no draw out
    of ``samples * max_attempts_per_sample`` (fewer for large tables, see below) covers every
    task."""
    rng = np.random.default_rng(seed)
    loss_inf = np.where(np.isnan(loss), np.inf, loss)
    n_net, n_task = loss.shape
    limit = budget + tolerance
    cheapest = cost.min()
    need = task_cost_bound(loss, cost)
    if need.sum() > limit + 1e-9:
        return None  # no draw can cover every task within the budget
    sums = np.zeros(n_task)
    accepted = attempts = 0
    budget_attempts = max_draws(samples, n_net, max_attempts_per_sample)
    while accepted < samples and attempts < budget_attempts:
        # Size the batch to the acceptance rate seen so far (rare covers at small budgets).
        rate = accepted / attempts if accepted else 1.0 / max(n_net, 1) if attempts else 1.0
        # The random orders are batch x networks: cap them near 8M entries (64 MB) so that
        # thousands of networks do not take gigabytes.
        cap = max(256, min(20_000, 8_000_000 // max(n_net, 1)))
        batch = int(np.clip((samples - accepted) / rate, 256, cap))
        batch = min(batch, budget_attempts - attempts)
        # Whole batches of draws at once: one random order per row, walked column by column.
        order = rng.permuted(np.tile(np.arange(n_net), (batch, 1)), axis=1)
        spent = np.zeros(batch)
        best = np.full((batch, n_task), np.inf)
        hopeless = np.zeros(batch, dtype=bool)
        for j in range(n_net):
            # Only draws with budget left, and of those only the ones whose next network fits,
            # are touched: after the first few networks that is a small share of the batch.
            open_rows = np.flatnonzero((limit - spent >= cheapest) & ~hopeless)
            if open_rows.size == 0:
                break
            nets = order[open_rows, j]
            fits = spent[open_rows] + cost[nets] <= limit
            rows, nets = open_rows[fits], nets[fits]
            spent[rows] += cost[nets]
            best[rows] = np.minimum(best[rows], loss_inf[nets])
            # A draw that cannot cover its uncovered tasks with the budget left will be
            # rejected whatever comes next: stop walking it (the accepted draws are unchanged).
            still_needed = np.isinf(best[rows]) @ need
            hopeless[rows] = spent[rows] + still_needed > limit + 1e-9
        keep = np.isfinite(best).all(axis=1) & (limit - spent < cheapest) & ~hopeless
        keep_rows = best[keep][: samples - accepted]
        sums += keep_rows.sum(axis=0)
        accepted += len(keep_rows)
        attempts += batch
    if accepted == 0:
        return None
    per_task = sums / accepted
    return RandomResult(per_task, float(per_task.sum()), accepted, attempts)
