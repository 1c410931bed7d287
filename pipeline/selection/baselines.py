"""Baselines on the same budgets as the solve: all-in-one, independent, random and worst.

* all-in-one: the one network with every task (the best on validation if several sizes fit).
* independent: one single-task network per task, all of one size: the most expensive size
  that fits (all half-size networks from budget T/2, all full-size from T, as in Standley's
  figures).
* independent_mix: one single-task network per task, sizes mixed as the budget allows, chosen
  exactly on validation by the solver restricted to single-task networks.
* random: Standley's sampler (main.cpp, do_one_random): take networks in random order, keeping
  each that still fits, until the unspent budget is below the cheapest network; keep draws that
  cover every task. Reported as the mean test total over ``samples`` accepted draws, out of at
  most ``samples`` x 50 draws (fewer for long draws over many tasks: max_draws; fewer
  accepted where covers are rare). Drawn in the
  walk's equivalent sequential form, batches of draws at once (random_draws).
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


def _single_kinds(cand: Candidates) -> dict[object, list[int]]:
    """Usable single-task networks by size label; external results may have none, then by
    cost."""
    nets = np.flatnonzero(cand.singles() & cand.trained & cand.usable(cand.val))
    kinds: dict[object, list[int]] = {}
    for n in nets:
        kind = cand.size[n] if cand.size[n] is not None else round(float(cand.cost[n]), 6)
        kinds.setdefault(kind, []).append(int(n))
    return kinds


def independent_infeasible(cand: Candidates, budget: float) -> str:
    """Why no one-size set of single-task networks is deployed at ``budget``: what the
    cheapest complete one costs, and that half-width ones were never trained where so (a sweep
    with sweep.sizes auto trains them only where some budget can deploy one)."""
    costs = {}
    for kind, group in _single_kinds(cand).items():
        per_task: dict[int, float] = {}
        for n in group:
            t = int(np.flatnonzero(cand.members[n])[0])
            per_task[t] = min(per_task.get(t, np.inf), float(cand.cost[n]))
        if len(per_task) == len(cand.tasks):
            costs[kind] = sum(per_task.values())
    if not costs:
        why = "no size has a single-task network for every task"
    else:
        kind, cost = min(costs.items(), key=lambda item: item[1])
        why = f"{kind} single-task networks for all {len(cand.tasks)} tasks cost {cost:g}"
    if "half" not in costs and "full" in costs:
        why += "; half-width ones were not trained (infeasible at these budgets)"
    return f"infeasible at budget {budget:g}: {why}"


def independent(cand: Candidates, budget: float, tolerance: float) -> tuple[int, ...] | None:
    """The most expensive one-size set of single-task networks within the budget, or None."""
    kinds = _single_kinds(cand)
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


# A draw costs about (networks it keeps) x (tasks) operations: past this many in all, fewer
# draws are tried (a fixed number, so the results do not depend on the machine's speed). 12
# and 30 tasks with triples get the full samples x 50 draws at every budget; 100 tasks + pairs
# about 5,000, 200 tasks about 1,250 (the old walk's cap, 20M / networks: 3,900 and 1,000).
DRAW_WORK = 100_000_000


def max_steps(cost: np.ndarray, limit: float) -> int:
    """The most networks a draw within ``limit`` can keep (each costs >= the cheapest)."""
    return min(len(cost), int(np.floor(limit / float(np.min(cost)) + 1e-9)) + 1)


def max_draws(samples: int, n_task: int, steps: int, per_sample: int = 50) -> int:
    """How many random draws random_choice tries at most: ``per_sample`` per asked sample, fewer
    where a draw is long (``steps`` networks over ``n_task`` tasks; DRAW_WORK)."""
    return min(samples * per_sample, max(samples, DRAW_WORK // max(steps * n_task, 1)))


@dataclass(frozen=True)
class Draws:
    """One batch of Standley's random draws (random_draws)."""

    done: np.ndarray  # (draws,) the draw ended maximal (nothing more fits); False: cut short
    best: np.ndarray  # (draws, T) a done draw's least loss per task (inf: uncovered)
    kept: np.ndarray  # (draws, steps) the networks a done draw keeps, in order; -1 pads


def random_draws(
    loss: np.ndarray,
    cost: np.ndarray,
    limit: float,
    batch: int,
    rng: np.random.Generator,
    need: np.ndarray | None = None,
    record: bool = True,
) -> Draws:
    """``batch`` draws of Standley's sampler within ``limit``, stepped together (numpy).

    Standley's walk (a random order of all networks, each kept if it still fits) is drawn in
    its equivalent sequential form: the next network kept is uniform among the networks not
    yet kept that still fit. (A network the walk skips never fits later, since the spent budget
    only grows, and the unwalked rest of a uniform order is uniform, so its first fitting
    network is uniform among the fitting ones.) A draw thus takes as many steps as it keeps
    networks, not as many as there are, each step O(tasks + distinct costs) per draw.
    ``need`` (task_cost_bound): stop a draw, not done, once its uncovered tasks cannot be
    covered with the budget left (it would be rejected). ``record``: fill Draws.kept.
    """
    loss = np.asarray(loss, dtype=float)
    cost = np.asarray(cost, dtype=float)
    n_net, n_task = loss.shape
    # Networks by cost: those that fit a draw are a prefix of this order.
    by_cost = np.argsort(cost, kind="stable")
    sorted_cost = cost[by_cost]
    loss_inf = np.where(np.isnan(loss), np.inf, loss)[by_cost]
    values, first = np.unique(sorted_cost, return_index=True)
    prefix_end = np.append(first[1:], n_net)  # networks costing <= values[i]: [0, prefix_end[i])
    steps = max_steps(cost, limit)
    out_best = np.full((batch, n_task), np.inf)
    out_order = np.full((batch, steps if record else 0), -1, dtype=np.int64)
    done = np.zeros(batch, dtype=bool)
    # The draws still walking, compacted: their ids, spent budget, best loss per task and the
    # networks kept in order. Which positions (in by_cost order) a draw keeps: by id, not
    # compacted (a byte per network and draw: copying it every step would dominate).
    ids = np.arange(batch)
    spent = np.zeros(batch)
    best = np.full((batch, n_task), np.inf)
    taken = np.zeros((batch, n_net), dtype=bool)
    order = np.full((batch, out_order.shape[1]), -1, dtype=np.int64)
    for step in range(steps + 1):
        if ids.size == 0:
            break
        n_fit = _n_fit(spent, values, prefix_end, limit)
        pos = _uniform_free(rng, n_fit, taken, ids)
        ended = pos < 0  # nothing more fits: the draw is complete
        if ended.any():
            done[ids[ended]] = True
            out_best[ids[ended]] = best[ended]
            out_order[ids[ended]] = order[ended]
            going = ~ended
            ids, spent, best = ids[going], spent[going], best[going]
            order, pos = order[going], pos[going]
        if ids.size == 0 or step == steps:
            break
        taken[ids, pos] = True
        if record:
            order[:, step] = by_cost[pos]
        spent += sorted_cost[pos]
        np.minimum(best, loss_inf[pos], out=best)
        if need is not None:
            hopeful = spent + np.isinf(best) @ need <= limit + 1e-9
            if not hopeful.all():
                ids, spent, best = ids[hopeful], spent[hopeful], best[hopeful]
                order = order[hopeful]
    return Draws(done, out_best, out_order)


def _n_fit(spent: np.ndarray, values: np.ndarray, prefix_end: np.ndarray, limit: float):
    """Per draw, how many networks (by cost) pass the walk's test spent + cost <= limit."""
    n_values = np.searchsorted(values, limit - spent, side="right")
    # searchsorted compared cost <= limit - spent; settle the rounding against the walk's sum.
    for _ in range(values.size + 1):
        over = (n_values > 0) & (spent + values[np.maximum(n_values - 1, 0)] > limit)
        under = (n_values < values.size) & (
            spent + values[np.minimum(n_values, values.size - 1)] <= limit
        )
        if not (over.any() or under.any()):
            break
        n_values = n_values - over + under
    return np.where(n_values > 0, prefix_end[np.maximum(n_values - 1, 0)], 0)


def _uniform_free(
    rng: np.random.Generator, n_fit: np.ndarray, taken: np.ndarray, ids: np.ndarray
) -> np.ndarray:
    """Per draw ``ids[i]``, a position uniform among [0, n_fit[i]) less the ones it has
    ``taken``; -1 where none is free. Rejection (redraw the rows that hit a taken position)
    for a few rounds; then, for the rows left, an exact draw among their free positions. Both
    are exactly uniform."""
    pos = np.full(n_fit.size, -1)
    todo = np.flatnonzero(n_fit > 0)
    for _ in range(8):
        if todo.size == 0:
            return pos
        draw = rng.integers(0, n_fit[todo])
        hit = taken[ids[todo], draw]
        pos[todo[~hit]] = draw[~hit]
        todo = todo[hit]
    if todo.size:
        free = ~taken[ids[todo]] & (np.arange(taken.shape[1]) < n_fit[todo, None])
        n_free = free.sum(axis=1)
        k = rng.integers(0, np.maximum(n_free, 1))
        chosen = np.argmax(np.cumsum(free, axis=1) > k[:, None], axis=1)
        pos[todo] = np.where(n_free > 0, chosen, -1)
    return pos


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
    of max_draws covers every task. Draws: random_draws;
    tests/test_selection_random.py checks their distribution against the literal walk."""
    rng = np.random.default_rng(seed)
    loss = np.asarray(loss, dtype=float)
    cost = np.asarray(cost, dtype=float)
    n_net, n_task = loss.shape
    limit = budget + tolerance
    need = task_cost_bound(loss, cost)
    if n_net == 0 or need.sum() > limit + 1e-9:
        return None  # no draw can cover every task within the budget
    # Per draw in a batch: a byte per network (kept or not) and its best loss per task; about
    # 32 MB a batch.
    cap = max(256, min(200_000, 32_000_000 // (n_net + 8 * n_task)))
    sums = np.zeros(n_task)
    accepted = attempts = 0
    budget_attempts = max_draws(samples, n_task, max_steps(cost, limit), max_attempts_per_sample)
    while accepted < samples and attempts < budget_attempts:
        # Size the batch to the acceptance rate seen so far (rare covers at small budgets).
        rate = accepted / attempts if accepted else 1.0 / max(n_net, 1) if attempts else 1.0
        batch = int(np.clip((samples - accepted) / rate, 256, cap))
        batch = min(batch, budget_attempts - attempts)
        # Draws cut short could not cover every task: rejected like the walk would reject them.
        draws = random_draws(loss, cost, limit, batch, rng, need, record=False)
        keep = draws.done & np.isfinite(draws.best).all(axis=1)
        keep_rows = draws.best[keep][: samples - accepted]
        sums += keep_rows.sum(axis=0)
        accepted += len(keep_rows)
        attempts += batch
    if accepted == 0:
        return None
    per_task = sums / accepted
    return RandomResult(per_task, float(per_task.sum()), accepted, attempts)
