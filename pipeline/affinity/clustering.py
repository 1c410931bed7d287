"""Candidate groups for many tasks: clustering of the affinity, then a local search on TAG's
objective (docs/affinity.md, "Hundreds of tasks").

Exact selection enumerates 3^n subsets: impossible beyond ~15 tasks. Here:

1. a symmetric similarity: remove each target's mean incoming affinity (TAG's selection cannot
   see a per-target offset: every group serving a task shifts by the same amount), then
   ``S = (Z + Z^T) / 2`` with a zero diagonal;
2. a partition into k clusters: spectral clustering (scikit-learn, ``affinity='precomputed'``,
   on S shifted to be non-negative) or average-linkage agglomerative clustering (scipy, on
   ``max(S) - S``);
3. optionally (``+search``) a steepest-ascent local search on TAG's objective: move one task to
   another block while the total served score improves (blocks are groups; a block of one task
   scores the singleton value), then grow each group by "helper" tasks that raise the score of
   the tasks it serves (TAG's selection allows overlapping groups: a task may sit in a group
   only to help others), then ``polish``: add / remove / open-a-pair moves on the objective
   with overlapping groups. At 617 tasks this takes seconds per k (docs/affinity.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .selection import TAG_SINGLETON, Grouping, _check_table, _sign, _singletons, evaluate


def symmetric_similarity(table: np.ndarray, center: bool = True) -> np.ndarray:
    """From a recipient-major table ``T[t, o]`` (benefit of o for t), the symmetric similarity
    of step 1 (module doc)."""
    t = np.array(table, dtype=float)
    n = t.shape[0]
    off = ~np.eye(n, dtype=bool)
    t[~off] = 0.0
    if center and n > 1:
        t = t - (t.sum(axis=1, keepdims=True) / (n - 1))
        t[~off] = 0.0
    s = (t + t.T) / 2.0
    return s


def spectral_labels(similarity: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Spectral clustering of a symmetric similarity into k clusters (labels 0..k-1)."""
    n = similarity.shape[0]
    if k <= 1:
        return np.zeros(n, dtype=int)
    if k >= n:
        return np.arange(n)
    from sklearn.cluster import SpectralClustering

    off = ~np.eye(n, dtype=bool)
    lo, hi = similarity[off].min(), similarity[off].max()
    a = np.ones((n, n)) if hi <= lo else (similarity - lo) / (hi - lo)
    np.fill_diagonal(a, 0.0)
    model = SpectralClustering(
        n_clusters=k, affinity="precomputed", random_state=seed, assign_labels="cluster_qr"
    )
    return np.asarray(model.fit_predict(a), dtype=int)


def agglomerative_labels(similarity: np.ndarray, ks: Sequence[int]) -> dict[int, np.ndarray]:
    """Average-linkage clustering on distance ``max(S) - S``, cut at each k in ``ks``."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    n = similarity.shape[0]
    out = {}
    if n < 2:
        return {k: np.zeros(n, dtype=int) for k in ks}
    d = similarity.max() - similarity
    np.fill_diagonal(d, 0.0)
    tree = linkage(squareform(d, checks=False), method="average")
    for k in ks:
        out[k] = fcluster(tree, t=min(max(k, 1), n), criterion="maxclust") - 1
    return out


def _block_value(p, m, single_sum):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(m >= 2, p / np.maximum(m - 1, 1), np.where(m == 1, single_sum, 0.0))


def local_search(
    table: np.ndarray,
    labels: np.ndarray,
    k: int,
    singles: np.ndarray,
    max_moves: int | None = None,
) -> np.ndarray:
    """Steepest-ascent single-task moves between at most k blocks, maximising
    ``sum over blocks B of sum_{t in B} mean_{o in B, o != t} T[t, o]`` (singletons: ``singles``).
    ``table`` is recipient-major and already signed so that higher is better."""
    n = table.shape[0]
    t = np.array(table, dtype=float)
    np.fill_diagonal(t, 0.0)
    w = t + t.T
    # relabel to 0..used-1 and give k slots (empty ones allow a new block)
    _, labels = np.unique(labels, return_inverse=True)
    slots = max(k, int(labels.max()) + 1)
    onehot = np.zeros((n, slots))
    onehot[np.arange(n), labels] = 1.0
    c = w @ onehot  # c[x, b] = sum over o in b of W[x, o]
    size = onehot.sum(axis=0)
    pairs = 0.5 * (c * onehot).sum(axis=0)  # ordered-pair sum of T within each block
    ssum = singles @ onehot
    rows = np.arange(n)
    eps = 1e-12 * (np.abs(t).max() + np.abs(singles).max() + 1e-300) * n
    max_moves = max_moves if max_moves is not None else 20 * n + 100
    for _ in range(max_moves):
        cur = _block_value(pairs, size, ssum)
        a = labels
        new_a = _block_value(pairs[a] - c[rows, a], size[a] - 1, ssum[a] - singles)
        new_b = _block_value(
            pairs[None, :] + c, size[None, :] + 1, ssum[None, :] + singles[:, None]
        )
        delta = (new_a - cur[a])[:, None] + new_b - cur[None, :]
        delta[rows, a] = -np.inf
        x, b = np.unravel_index(int(np.argmax(delta)), delta.shape)
        if not delta[x, b] > eps:
            break
        a = labels[x]
        pairs[a] -= c[x, a]
        pairs[b] += c[x, b]
        size[a] -= 1
        size[b] += 1
        ssum[a] -= singles[x]
        ssum[b] += singles[x]
        c[:, a] -= w[:, x]
        c[:, b] += w[:, x]
        labels = labels.copy()
        labels[x] = b
    _, labels = np.unique(labels, return_inverse=True)
    return labels


def add_helpers(table: np.ndarray, labels: np.ndarray, singles: np.ndarray) -> list[list[int]]:
    """Grow each block's group by the outside task that most raises the total score of the
    block's (served) tasks, while it does: TAG lets a task sit in a group only to help."""
    n = table.shape[0]
    t = np.array(table, dtype=float)
    np.fill_diagonal(t, 0.0)
    eps = 1e-12 * (np.abs(t).max() + np.abs(singles).max() + 1e-300) * n
    groups = []
    for b in np.unique(labels):
        served = np.flatnonzero(labels == b)
        members = np.zeros(n, dtype=bool)
        members[served] = True
        col = t[served].sum(axis=0)  # sum over served t of T[t, y]
        total = col[members].sum()  # sum over served t of sum over members o of T[t, o]
        m = len(served)
        current = total / (m - 1) if m >= 2 else singles[served].sum()
        while m < n:
            gain = np.where(members, -np.inf, (total + col) / m)
            y = int(np.argmax(gain))
            if not gain[y] > current + eps:
                break
            members[y] = True
            total += col[y]
            m += 1
            current = total / (m - 1)
        groups.append(list(np.flatnonzero(members)))
    return groups


METHODS = (
    "exact",
    "spectral",
    "agglomerative",
    "spectral+search",
    "agglomerative+search",
    "best",
    "auto",
)
AUTO_EXACT_MAX = 12
POLISH_MAX_TASKS = 1000  # polish costs O(k n^2) per step


def candidate_groups(
    affinity,
    n_groups_list: Sequence[int],
    method: str = "auto",
    *,
    seed: int = 0,
    singleton: float | str = TAG_SINGLETON,
    direction: str = "maximise",
    center: bool = True,
) -> list[Grouping]:
    """Candidate groupings of ``affinity`` (an ``Affinity``) for each maximum number of groups
    in ``n_groups_list``.

    ``method``: ``exact`` (TAG's selection, optimal; <= 15 tasks), ``spectral``,
    ``agglomerative`` (partitions), ``spectral+search`` / ``agglomerative+search`` (then local
    search on TAG's objective, helper tasks and polish), ``best`` (both searches, the better
    per k), ``auto`` (exact up to 12 tasks, else ``best``: the closest to the exact optimum in
    bench/bench_affinity_selection.py, seconds per k at 617 tasks). Each Grouping carries its
    TAG objective, serving groups and per-group estimated benefit (``group_score``)."""
    from .table import Affinity

    if not isinstance(affinity, Affinity):
        raise TypeError("affinity must be an Affinity (see read_affinity / affinity_from_frame)")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {list(METHODS)}")
    ks = [int(k) for k in n_groups_list]
    if not ks or min(ks) < 1:
        raise ValueError(f"numbers of groups must be >= 1, got {ks}")
    tasks = affinity.tasks
    n = len(tasks)
    table = affinity.recipient_table()
    if method == "auto":
        method = "exact" if n <= AUTO_EXACT_MAX else "best"
    if method == "best":
        runs = [
            candidate_groups(
                affinity, ks, m, seed=seed, singleton=singleton, direction=direction, center=center
            )
            for m in ("spectral+search", "agglomerative+search")
        ]
        sign = _sign(direction)
        return [max(pair, key=lambda g: sign * g.objective) for pair in zip(*runs)]
    if method == "exact":
        from .selection import tag_exact

        return tag_exact(tasks, table, ks, singleton=singleton, direction=direction)
    table = _check_table(table, n)
    sign = _sign(direction)
    singles = _singletons(table, singleton)
    signed = sign * table
    similarity = symmetric_similarity(signed, center=center)
    base, search = method.split("+")[0], method.endswith("+search")
    if base == "agglomerative":
        partitions = agglomerative_labels(similarity, ks)
    else:
        partitions = {k: spectral_labels(similarity, min(k, n), seed) for k in ks}
    out = []
    for k in ks:
        labels = partitions[k]
        if search:
            labels = local_search(signed, labels, min(k, n), sign * singles)
            groups = add_helpers(signed, labels, sign * singles)
            if n <= POLISH_MAX_TASKS:
                groups = polish(signed, groups, sign * singles, max_groups=min(k, n))
        else:
            groups = [list(np.flatnonzero(labels == b)) for b in np.unique(labels)]
        out.append(
            evaluate(
                tasks,
                table,
                [[tasks[i] for i in g] for g in groups],
                singleton,
                direction,
                max_groups=k,
                method=method,
            )
        )
    return out


def polish(
    table: np.ndarray,
    groups: list[list[int]],
    singles: np.ndarray,
    max_groups: int | None = None,
    max_steps: int | None = None,
) -> list[list[int]]:
    """Steepest ascent on TAG's objective itself, over overlapping groups: add a task to a
    group, remove one from it (every task stays in some group), or open a new group of two
    tasks while fewer than ``max_groups`` are used; stop when no move improves the total served
    score (each task served by its best group). ``table`` signed, higher better. One step
    evaluates every move in O(k n^2) numpy work."""
    n = table.shape[0]
    t = np.array(table, dtype=float)
    np.fill_diagonal(t, 0.0)
    max_groups = len(groups) if max_groups is None else max(max_groups, len(groups))
    k = max_groups
    member = np.zeros((k, n), dtype=bool)
    for g, grp in enumerate(groups):
        member[g, grp] = True
    rows = member.astype(float) @ t.T  # rows[g, u] = sum over o in g of T[u, o] (o != u)
    eps = 1e-12 * (np.abs(t).max() + np.abs(singles).max() + 1e-300) * n
    max_steps = max_steps if max_steps is not None else 2 * n + 50

    def scores():
        size = member.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = rows / np.maximum(size - 1, 1)[:, None]
        s = np.where(size[:, None] == 1, singles[None, :], s)
        return np.where(member, s, -np.inf), size

    for _ in range(max_steps):
        s, size = scores()
        order = np.argsort(-s, axis=0)
        best1 = s[order[0], np.arange(n)]
        best2 = s[order[1], np.arange(n)] if k > 1 else np.full(n, -np.inf)
        total = best1.sum()
        best_gain, best_move = eps, None
        for g in range(k):
            other = np.where(order[0] == g, best2, best1)  # each task's best without g
            m = member[g]
            sz = size[g]
            if sz == 0:
                continue
            # add x (rows of the matrices) to g: members' and x's new scores
            new = (rows[g][None, :] + t.T) / sz  # new[x, u] = (rows[g,u] + T[u,x]) / sz
            new = np.where(m[None, :] | np.eye(n, dtype=bool), new, -np.inf)
            new[m, :] = -np.inf  # x already a member: not an add
            gain = np.maximum(other[None, :], new).sum(axis=1) - total
            x = int(np.argmax(gain))
            if gain[x] > best_gain:
                best_gain, best_move = gain[x], (g, x, True)
            if sz >= 2:
                # remove x from g: x falls back to its other groups (must have one)
                if sz == 2:
                    new = np.where(m[None, :] & ~np.eye(n, dtype=bool), singles[None, :], -np.inf)
                else:
                    new = (rows[g][None, :] - t.T) / (sz - 2)
                    new = np.where(m[None, :] & ~np.eye(n, dtype=bool), new, -np.inf)
                gain = np.maximum(other[None, :], new).sum(axis=1) - total
                gain[~m] = -np.inf
                gain[m & ~np.isfinite(other)] = -np.inf  # x in no other group
                x = int(np.argmax(gain))
                if gain[x] > best_gain:
                    best_gain, best_move = gain[x], (g, x, False)
        if member.any(axis=1).sum() < max_groups:
            # a new pair group {x, y}: x scores T[x, y], y scores T[y, x]
            gain = np.maximum(best1[:, None], t) - best1[:, None]
            gain = gain + gain.T
            np.fill_diagonal(gain, -np.inf)
            x, y = np.unravel_index(int(np.argmax(gain)), gain.shape)
            if gain[x, y] > best_gain:
                best_gain, best_move = gain[x, y], (-1, (x, y), True)
        if best_move is None:
            break
        g, x, add = best_move
        if g == -1:  # new group
            g = int(np.flatnonzero(~member.any(axis=1))[0])
            for v in x:
                member[g, v] = True
                rows[g] += t[:, v]
            continue
        member[g, x] = add
        rows[g] += t[:, x] if add else -t[:, x]
    return [list(np.flatnonzero(member[g])) for g in range(k) if member[g].any()]
