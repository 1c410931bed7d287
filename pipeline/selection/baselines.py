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
  most ``samples`` x 50 draws (max_draws; fewer accepted where covers are rare). Drawn in the
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
    """How many random draws random_choice tries at most: ``per_sample`` per asked sample. A
    draw costs time in proportion to the networks it takes (at most budget / cheapest network),
    not to the networks it could take, so the cap no longer shrinks with the table's size."""
    del n_net  # kept for callers; the sampler's cost no longer depends on it
    return samples * per_sample


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
) -> Draws:
    """``batch`` draws of Standley's sampler within ``limit``, stepped together (numpy).

    Standley's walk (a random order of all networks, each kept if it still fits) is drawn in
    its equivalent sequential form: the next network kept is uniform among the networks not
    yet kept that still fit. (A network the walk skips never fits later, since the spent budget
    only grows, and the unwalked rest of a uniform order is uniform, so its first fitting
    network is uniform among the fitting ones.) A draw thus takes as many steps as it keeps
    networks, not as many as there are. ``need`` (task_cost_bound): stop a draw, not done,
    once its uncovered tasks cannot be covered with the budget left (it would be rejected).
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
    # A draw keeps at most this many networks (each costs >= the cheapest).
    max_steps = min(n_net, int(np.floor(limit / sorted_cost[0] + 1e-9)) + 1)
    out_best = np.full((batch, n_task), np.inf)
    out_order = np.full((batch, max_steps), -1, dtype=np.int64)
    done = np.zeros(batch, dtype=bool)
    # The draws still walking, compacted: their ids, spent budget, best loss per task, kept
    # positions (in by_cost order; padded with n_net) and kept networks.
    ids = np.arange(batch)
    spent = np.zeros(batch)
    best = np.full((batch, n_task), np.inf)
    kept = np.full((batch, max_steps), n_net, dtype=np.int64)
    order = np.full((batch, max_steps), -1, dtype=np.int64)
    for step in range(max_steps + 1):
        if ids.size == 0:
            break
        # How many networks fit each open draw (the walk's test: spent + cost <= limit), and
        # how many of those it keeps already.
        n_values = (spent[:, None] + values[None, :] <= limit).sum(axis=1)
        n_fit = np.where(n_values > 0, prefix_end[np.maximum(n_values - 1, 0)], 0)
        free = n_fit - (kept[:, :step] < n_fit[:, None]).sum(axis=1)
        ended = free == 0
        if ended.any():
            done[ids[ended]] = True
            out_best[ids[ended]] = best[ended]
            out_order[ids[ended]] = order[ended]
            going = ~ended
            ids, spent, best, kept, order = (
                ids[going],
                spent[going],
                best[going],
                kept[going],
                order[going],
            )
            n_fit, free = n_fit[going], free[going]
        if ids.size == 0 or step == max_steps:
            break
        pos = _uniform_free(rng, n_fit, free, kept[:, :step])
        kept[:, step] = pos
        order[:, step] = by_cost[pos]
        spent += sorted_cost[pos]
        np.minimum(best, loss_inf[pos], out=best)
        if need is not None:
            hopeful = spent + np.isinf(best) @ need <= limit + 1e-9
            if not hopeful.all():
                ids, spent, best, kept, order = (
                    ids[hopeful],
                    spent[hopeful],
                    best[hopeful],
                    kept[hopeful],
                    order[hopeful],
                )
    return Draws(done, out_best, out_order)


def _uniform_free(
    rng: np.random.Generator, n_fit: np.ndarray, free: np.ndarray, kept: np.ndarray
) -> np.ndarray:
    """Per row, a position uniform among [0, n_fit) less the row's ``kept`` positions (``free``
    of them, > 0). Rejection (redraw the rows that hit a kept position) while few rows hit;
    then, for the rows left, the k-th free position with k uniform, stepping past the sorted
    kept positions. Both are exactly uniform."""
    pos = rng.integers(0, n_fit)
    todo = np.flatnonzero((kept == pos[:, None]).any(axis=1))
    for _ in range(8):
        if todo.size == 0:
            return pos
        pos[todo] = rng.integers(0, n_fit[todo])
        todo = todo[(kept[todo] == pos[todo, None]).any(axis=1)]
    if todo.size:
        k = rng.integers(0, free[todo])
        for column in np.sort(kept[todo], axis=1).T:  # ascending; padding (n_net) never hits
            k = k + (column <= k)
        pos[todo] = k
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
    of ``samples * max_attempts_per_sample`` covers every task. Draws: random_draws;
    tests/test_selection_random.py checks their distribution against the literal walk."""
    rng = np.random.default_rng(seed)
    loss = np.asarray(loss, dtype=float)
    cost = np.asarray(cost, dtype=float)
    n_net, n_task = loss.shape
    limit = budget + tolerance
    need = task_cost_bound(loss, cost)
    if n_net == 0 or need.sum() > limit + 1e-9:
        return None  # no draw can cover every task within the budget
    max_steps = min(n_net, int(np.floor(limit / cost.min() + 1e-9)) + 1)
    # Per draw in a batch: its best loss per task and its kept networks (twice).
    cap = max(256, min(200_000, 8_000_000 // (n_task + 2 * max_steps)))
    sums = np.zeros(n_task)
    accepted = attempts = 0
    budget_attempts = max_draws(samples, n_net, max_attempts_per_sample)
    while accepted < samples and attempts < budget_attempts:
        # Size the batch to the acceptance rate seen so far (rare covers at small budgets).
        rate = accepted / attempts if accepted else 1.0 / max(n_net, 1) if attempts else 1.0
        batch = int(np.clip((samples - accepted) / rate, 256, cap))
        batch = min(batch, budget_attempts - attempts)
        # Draws cut short could not cover every task: rejected like the walk would reject them.
        draws = random_draws(loss, cost, limit, batch, rng, need)
        keep = draws.done & np.isfinite(draws.best).all(axis=1)
        keep_rows = draws.best[keep][: samples - accepted]
        sums += keep_rows.sum(axis=0)
        accepted += len(keep_rows)
        attempts += batch
    if accepted == 0:
        return None
    per_task = sums / accepted
    return RandomResult(per_task, float(per_task.sum()), accepted, attempts)
