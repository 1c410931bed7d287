"""Standley's higher-order approximation (HOA): judge a network of 3+ tasks by its pairs.

Every network of three or more tasks is replaced, per task t, by the mean of t's loss in the
pair networks {t, u} for the network's other tasks u. Only singles and pairs then need training:
task sets that were never trained are added as estimated networks (``trained`` False), up to
``max_order`` tasks, when every pair they need was trained at that size. Their test losses are
estimated the same way; trained networks keep their real test losses.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import combinations

import numpy as np

from ..sweep import join_tasks
from .candidates import Candidates


class TooManyEstimates(ValueError):
    """HOA would add more estimated networks than its limit."""


def _pair_tables(cand: Candidates, size: str | None) -> tuple[np.ndarray, ...] | None:
    """T x T matrices P[t, u] = loss on task t of the trained pair {t, u} at ``size`` (val,
    test) and T x T x S per-seed test; None if no pair was trained at this size."""
    n_tasks = len(cand.tasks)
    val = np.full((n_tasks, n_tasks), np.nan)
    test = np.full((n_tasks, n_tasks), np.nan)
    seeds = np.full((n_tasks, n_tasks, len(cand.seeds)), np.nan)
    found = False
    for n in np.flatnonzero((cand.members.sum(axis=1) == 2) & cand.trained):
        if cand.size[n] != size:
            continue
        t, u = np.flatnonzero(cand.members[n])
        for a, b in ((t, u), (u, t)):
            val[a, b], test[a, b] = cand.val[n, a], cand.test[n, a]
            seeds[a, b] = cand.test_seeds[n, a]
        found = True
    return (val, test, seeds) if found else None


def _estimate(pair: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Per task of ``members`` (indices), the mean of its pair losses with the other members
    over the pairs that exist (NaN if none does). Works on a trailing seed axis too."""
    out = np.full((len(members),) + pair.shape[2:], np.nan)
    for i, t in enumerate(members):
        others = pair[t, [u for u in members if u != t]]
        finite = np.isfinite(others)
        count = finite.sum(axis=0)
        total = np.where(finite, others, 0.0).sum(axis=0)
        out[i] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return out


def _cost_model(cand: Candidates, size: str | None) -> tuple[float, float]:
    """Cost as a line in the number of tasks, fitted to the trained networks of ``size``: extra
    tasks add heads, whose cost is linear in the count. Returns (intercept, slope)."""
    nets = np.flatnonzero(cand.trained & np.array([s == size for s in cand.size]))
    k = cand.members[nets].sum(axis=1)
    if np.unique(k).size < 2:
        return float(cand.cost[nets].mean()), 0.0
    slope, intercept = np.polyfit(k, cand.cost[nets], 1)
    return float(intercept), float(slope)


def higher_order_approximation(
    cand: Candidates, max_order: int = 3, max_networks: int | None = None
) -> Candidates:
    """``cand`` with the HOA estimate as the selection table for every network of 3+ tasks, plus
    estimated networks for the untrained task sets of 3..max_order tasks (see module doc).
    TooManyEstimates once more than ``max_networks`` would be added, before their tables are
    built (each is a row per task: 200 tasks + pairs would add 1.3 M triples, 8 GB)."""
    val = cand.val.copy()
    sizes = sorted({s for s in cand.size if s is not None}) or [None]
    tables = {size: _pair_tables(cand, size) for size in sizes}
    for n in np.flatnonzero(cand.members.sum(axis=1) >= 3):
        members = np.flatnonzero(cand.members[n])
        pair = tables.get(cand.size[n])
        val[n] = np.nan
        if pair is not None:
            val[n, members] = _estimate(pair[0], members)

    existing = {(frozenset(np.flatnonzero(m).tolist()), s) for m, s in zip(cand.members, cand.size)}
    added: dict[str, list] = {
        k: [] for k in ("names", "size", "cost", "members", "val", "test", "seeds")
    }
    n_tasks = len(cand.tasks)
    for size, pair in tables.items():
        if pair is None:
            continue
        intercept, slope = _cost_model(cand, size)
        have_pair = np.isfinite(pair[0]) & np.isfinite(pair[1])
        subsets = []
        for order in range(3, max_order + 1):
            for subset in combinations(range(n_tasks), order):
                if (frozenset(subset), size) in existing:
                    continue
                if not all(have_pair[a, b] for a, b in combinations(subset, 2)):
                    continue
                if max_networks is not None and len(subsets) + len(added["names"]) >= max_networks:
                    raise TooManyEstimates(
                        f"HOA skipped: it would add more than {max_networks:,} estimated task "
                        f"sets of up to {max_order} tasks from the pairs of {n_tasks} tasks "
                        "(selection.hoa_max_networks)"
                    )
                subsets.append(subset)
        for subset in subsets:
            order = len(subset)
            members = np.array(subset)
            row = np.zeros(n_tasks, dtype=bool)
            row[members] = True
            v = np.full(n_tasks, np.nan)
            t = np.full(n_tasks, np.nan)
            s = np.full((n_tasks, len(cand.seeds)), np.nan)
            v[members] = _estimate(pair[0], members)
            t[members] = _estimate(pair[1], members)
            s[members] = _estimate(pair[2], members)
            name = join_tasks(cand.tasks[i] for i in subset)
            added["names"].append(f"{name}@{size}" if size is not None else name)
            added["size"].append(size)
            added["cost"].append(intercept + slope * order)
            added["members"].append(row)
            added["val"].append(v)
            added["test"].append(t)
            added["seeds"].append(s)
    if not added["names"]:
        return replace(cand, val=val)
    k = len(added["names"])
    return replace(
        cand,
        networks=cand.networks + added["names"],
        size=cand.size + added["size"],
        cost=np.concatenate([cand.cost, added["cost"]]),
        members=np.vstack([cand.members, added["members"]]),
        val=np.vstack([val, added["val"]]),
        test=np.vstack([cand.test, added["test"]]),
        early=np.vstack([cand.early, np.full((k, n_tasks), np.nan)]),
        test_seeds=np.concatenate([cand.test_seeds, np.stack(added["seeds"])]),
        trained=np.concatenate([cand.trained, np.zeros(k, dtype=bool)]),
    )
