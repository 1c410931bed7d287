"""Synthetic grouping instances with planted task affinities, for the solver benchmark
(bench/bench_solver.py) and the solver tests. Not used by the workflow.

Tasks fall into clusters of ``cluster_size`` consecutive tasks. Task t has a base loss
b_t ~ U(0.5, 1.0): its full-size single-task network's loss. Its half-size single-task network
scores b_t * U(1.05, 1.20). In a network with task set S (|S| >= 2), task t scores

    b_t * (1 + mean_{u in S, u != t} A[t, u] + N(0, 0.02))

where the affinity A[t, u] is -0.10 within a cluster and +0.06 across clusters, plus a
pair-specific N(0, 0.04) perturbation: sharing with a cluster mate helps, with a stranger hurts,
with noise so that many groupings are close. Costs follow Standley's units: every full-size
network costs 1, every half-size one 0.5.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def planted(
    n_task: int, orders: tuple[int, ...] = (2, 3), seed: int = 0, cluster_size: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """(loss, cost): networks x tasks losses (NaN off a network's tasks) and unit costs, for
    full and half singles plus every task set of the given orders (>= 2)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.5, 1.0, n_task)
    cluster = np.arange(n_task) // cluster_size
    affinity = np.where(cluster[:, None] == cluster[None, :], -0.10, 0.06)
    affinity = affinity + rng.normal(0.0, 0.04, (n_task, n_task))
    subsets = [s for k in orders for s in itertools.combinations(range(n_task), k)]
    loss = np.full((2 * n_task + len(subsets), n_task), np.nan)
    cost = np.ones(loss.shape[0])
    tasks = np.arange(n_task)
    loss[tasks, tasks] = base
    loss[n_task + tasks, tasks] = base * rng.uniform(1.05, 1.20, n_task)
    cost[n_task : 2 * n_task] = 0.5
    for k in orders:
        sets = np.array(list(itertools.combinations(range(n_task), k)), dtype=int)
        if sets.size == 0:
            continue
        rows = 2 * n_task + np.flatnonzero([len(s) == k for s in subsets])
        # Mean affinity of each member to the others: sum of the k x k block minus the diagonal.
        block = affinity[sets[:, :, None], sets[:, None, :]]
        diag = affinity[sets, sets]
        mean = (block.sum(axis=2) - diag) / (k - 1)
        noise = rng.normal(0.0, 0.02, sets.shape)
        loss[rows[:, None], sets] = base[sets] * (1.0 + mean + noise)
    return loss, cost


def spread_budgets(n_task: int, max_order: int, count: int = 9) -> list[float]:
    """``count`` budgets from the cheapest cover, ceil(n / max_order), to n (all full singles)."""
    low = math.ceil(n_task / max_order)
    return [float(b) for b in np.round(np.linspace(low, n_task, count) * 2) / 2]


def large_networks(
    n_task: int = 27,
    n_large: int = 2806,
    sizes: tuple[int, int] = (9, 17),
    seed: int = 0,
    cluster_size: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """(loss, cost) shaped like issue 20's external table: every single, every pair, the
    all-task network and ``n_large`` distinct random task sets of ``sizes`` tasks (27 tasks:
    3,185 networks), each costing 1, scored with planted's affinity model."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.5, 1.0, n_task)
    cluster = np.arange(n_task) // cluster_size
    affinity = np.where(cluster[:, None] == cluster[None, :], -0.10, 0.06)
    affinity = affinity + rng.normal(0.0, 0.04, (n_task, n_task))
    sets = [(t,) for t in range(n_task)] + list(itertools.combinations(range(n_task), 2))
    seen = set(sets) | {tuple(range(n_task))}
    while len(sets) < n_task + n_task * (n_task - 1) // 2 + n_large:
        k = int(rng.integers(sizes[0], sizes[1] + 1))
        s = tuple(sorted(rng.choice(n_task, k, replace=False).tolist()))
        if s not in seen:
            seen.add(s)
            sets.append(s)
    sets.append(tuple(range(n_task)))
    loss = np.full((len(sets), n_task), np.nan)
    for n, s in enumerate(sets):
        members = np.array(s)
        if members.size == 1:
            loss[n, members] = base[members]
            continue
        block = affinity[members[:, None], members[None, :]]
        mean = (block.sum(axis=1) - np.diag(block)) / (members.size - 1)
        noise = rng.normal(0.0, 0.02, members.size)
        loss[n, members] = base[members] * (1.0 + mean + noise)
    return loss, np.ones(len(sets))
