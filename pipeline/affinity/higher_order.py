"""Higher-order (sampled) task affinity: Li, Ju, Sharma & Zhang, KDD 2023, "Boosting Multitask
Learning on Graphs through Higher-Order Task Affinities".

Train m networks, each on a random subset of k tasks; the affinity of partner j for task i is
then i's mean loss over the subsets that contain both. Lower loss means a better partner, so to
keep TAG's convention (higher = better) the affinity is the NEGATED mean loss:

    Z(j -> i) = - mean over subsets S with i, j in S of loss_i(S)      (i != j)
    Z(i -> i) = - mean over subsets S with i in S of loss_i(S)

Tasks with losses on different scales: only differences within one target matter to TAG's
selection (a per-target offset changes nothing), and the clustering removes each target's mean;
``normalise=True`` additionally divides each target's losses by its mean loss so that every task
weighs the same in the symmetric similarity. Spectral clustering of this matrix is the paper's
grouping: ``candidate_groups(affinity, ks, method="spectral")``.

The long input (``subset_losses``): one row per (subset, task in it): ``subset`` (any id),
``task``, ``loss``; optionally ``tasks`` (the subset's task list, checked against its rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from .table import Affinity, AffinityFormatError


def _pairs_per_subset(k: int) -> int:
    return k * (k - 1) // 2


def sample_subsets(
    tasks: Sequence[str], k: int, m: int, seed: int = 0, cover_pairs: bool = True
) -> list[tuple[str, ...]]:
    """m subsets of k distinct tasks, drawn deterministically from ``seed``.

    With ``cover_pairs`` (default) every pair of tasks is in at least one subset: the subsets
    are built greedily, each starting from a task with the most uncovered pairs and adding the
    task that covers most uncovered pairs with the members so far (ties broken at random); once
    all pairs are covered the remaining subsets are uniform random. ``m * k(k-1)/2 >=
    n(n-1)/2`` is necessary; if it fails, or the greedy cover needs more than m subsets, a
    ValueError names the smallest m that works for this seed (the documented fallback: raise
    m, or pass ``cover_pairs=False`` for purely random subsets). Members keep ``tasks`` order.
    """
    tasks = tuple(tasks)
    n = len(tasks)
    if len(set(tasks)) != n:
        raise ValueError("task names must be unique")
    if k < 2 or k > n:
        raise ValueError(f"subset size k={k} must be between 2 and the number of tasks n={n}")
    if m < 1:
        raise ValueError(f"number of subsets m={m} must be >= 1")
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    if cover_pairs:
        need = n * (n - 1) // 2
        if m * _pairs_per_subset(k) < need:
            lower = -(-need // _pairs_per_subset(k))
            raise ValueError(
                f"m={m} subsets of k={k} tasks cover at most {m * _pairs_per_subset(k)} of the "
                f"{need} task pairs of n={n} tasks; need m >= {lower} to cover every pair "
                f"(or cover_pairs=False)"
            )
        uncovered = ~np.eye(n, dtype=bool)
        while uncovered.any():
            counts = uncovered.sum(axis=1) + rng.random(n) * 0.5
            members = [int(np.argmax(counts))]
            free = np.ones(n, dtype=bool)
            free[members[0]] = False
            while len(members) < k:
                gain = uncovered[:, members].sum(axis=1) + rng.random(n) * 0.5
                gain[~free] = -1
                nxt = int(np.argmax(gain))
                members.append(nxt)
                free[nxt] = False
            idx = np.array(members)
            uncovered[np.ix_(idx, idx)] = False
            chosen.append(np.sort(idx))
        if len(chosen) > m:
            raise ValueError(
                f"m={m} subsets of k={k} tasks: the greedy pair cover for seed={seed} needs "
                f"m >= {len(chosen)} to put every pair of the n={n} tasks in some subset"
            )
    while len(chosen) < m:
        chosen.append(np.sort(rng.choice(n, size=k, replace=False)))
    order = rng.permutation(len(chosen))
    return [tuple(tasks[i] for i in chosen[j]) for j in order]


def subset_frame(subsets: Sequence[Sequence[str]], losses) -> pd.DataFrame:
    """Helper: the long table from subsets and a callable ``losses(subset) -> {task: loss}``."""
    rows = []
    for sid, subset in enumerate(subsets):
        values = losses(tuple(subset))
        for task in subset:
            rows.append((sid, task, float(values[task])))
    return pd.DataFrame(rows, columns=["subset", "task", "loss"])


def higher_order_affinity(
    subset_losses: pd.DataFrame,
    tasks: Sequence[str] | None = None,
    normalise: bool = False,
    require_all_pairs: bool = True,
) -> Affinity:
    """The n x n higher-order affinity (module doc) from a long table of per-subset losses.
    Pairs never trained together are an error naming them (``require_all_pairs=False`` leaves
    them NaN; selection will refuse them)."""
    missing = [c for c in ("subset", "task", "loss") if c not in subset_losses.columns]
    if missing:
        raise AffinityFormatError(
            f"subset losses: missing column(s) {missing} (need subset, task, loss)"
        )
    frame = subset_losses.copy()
    frame["task"] = frame["task"].astype(str)
    frame["loss"] = pd.to_numeric(frame["loss"], errors="raise").astype(float)
    bad = frame[~np.isfinite(frame["loss"])]
    if len(bad):
        shown = list(zip(bad["subset"], bad["task"]))[:5]
        raise AffinityFormatError(
            f"subset losses: non-finite loss for (subset, task) {shown} ({len(bad)} rows)"
        )
    dup = frame.duplicated(["subset", "task"])
    if dup.any():
        shown = list(zip(frame.loc[dup, "subset"], frame.loc[dup, "task"]))[:5]
        raise AffinityFormatError(f"subset losses: duplicate (subset, task) rows {shown}")
    if "tasks" in frame.columns:
        for sid, rows in frame.groupby("subset", sort=False):
            declared = (
                {str(t) for t in rows["tasks"].iloc[0]}
                if not isinstance(rows["tasks"].iloc[0], str)
                else set(rows["tasks"].iloc[0].split("+"))
            )
            if declared != set(rows["task"]):
                raise AffinityFormatError(
                    f"subset losses: subset {sid!r} declares {sorted(declared)} but has rows "
                    f"for {sorted(set(rows['task']))}"
                )
    seen = list(dict.fromkeys(frame["task"]))
    order = tuple(seen) if tasks is None else tuple(str(t) for t in tasks)
    unknown = [t for t in seen if t not in set(order)]
    if unknown:
        raise AffinityFormatError(f"subset losses: task(s) not in the task list: {unknown[:5]}")
    n = len(order)
    pos = {t: i for i, t in enumerate(order)}
    if normalise:
        mean_loss = frame.groupby("task")["loss"].mean()
        if (mean_loss <= 0).any():
            raise AffinityFormatError("normalise=True needs positive mean losses")
        frame["loss"] = frame["loss"] / frame["task"].map(mean_loss)
    total = np.zeros((n, n))
    count = np.zeros((n, n))
    for _, rows in frame.groupby("subset", sort=False):
        idx = np.array([pos[t] for t in rows["task"]])
        loss = rows["loss"].to_numpy()
        # target i (row of `loss`) with every partner j in the subset, including itself
        total[np.ix_(idx, idx)] += loss[None, :]
        count[np.ix_(idx, idx)] += 1
    # total[j, i] accumulates loss of target i over subsets containing source j
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = -total / count
    off = ~np.eye(n, dtype=bool)
    never = [(order[j], order[i]) for j, i in zip(*np.nonzero(off & (count == 0)))]
    if never and require_all_pairs:
        pairs = sorted({tuple(sorted(p)) for p in never})
        shown = ", ".join(f"{a!r}+{b!r}" for a, b in pairs[:5])
        raise AffinityFormatError(
            f"subset losses: {len(pairs)} task pair(s) never trained together, e.g. {shown}; "
            f"draw subsets with sample_subsets(..., cover_pairs=True)"
        )
    return Affinity(order, matrix)


def pair_coverage(subsets: Sequence[Sequence[str]], tasks: Sequence[str]) -> np.ndarray:
    """How many subsets contain each pair (n x n, symmetric; diagonal: per task)."""
    pos = {t: i for i, t in enumerate(tasks)}
    c = np.zeros((len(tasks), len(tasks)), dtype=int)
    for subset in subsets:
        idx = [pos[t] for t in subset]
        for a, b in combinations(idx, 2):
            c[a, b] += 1
            c[b, a] += 1
        for a in idx:
            c[a, a] += 1
    return c
