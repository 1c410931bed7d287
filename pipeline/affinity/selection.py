"""TAG's network selection (Fifty et al., NeurIPS 2021), solved exactly, and the evaluation of
any set of groups under the same rule.

The rule (``TAG_network_selection.ipynb``; see docs/affinity.md). It works on a recipient-major
table ``T[t, o]`` = how much partner ``o`` helps task ``t`` (for TAG: Z(o -> t), the affinity of
source ``o`` onto target ``t``; ``Affinity.recipient_table()`` gives it):

* a member ``t`` of a group G scores the mean of ``T[t, o]`` over the other members ``o``;
* a task alone scores ``singleton`` (TAG and CS: -1e6, never served alone when anything else
  exists; HOA: the diagonal, the single-task value);
* at most k groups are chosen (any task subsets, overlap allowed), each task is served by its
  best chosen group, and the objective is the mean over tasks of the served scores; TAG
  maximises it, HOA (losses, errors) minimises it.

Exact solver: a chosen set of groups induces a partition of the tasks into "served blocks";
conversely each block B may take the superset G of B that is best for B's members. So the
optimum over <= k groups is the best partition into <= k blocks, block B worth
``v(B) = max over G >= B of sum_{t in B} score(G, t)``. ``v`` costs 3^n (every group, every
subset of it) and the partition dynamic programme k * 3^n / 2, both vectorised with numpy over
bitmasks: n = 9 takes milliseconds, n = 12 about a second, n = 16 is refused (use clustering).

Among optimal solutions the one with the fewest groups is returned (a larger k that does not
improve the objective by more than a relative 1e-11 repeats the smaller k's groups), and among
supersets of a block that are equally good the smallest. Remaining exact ties (inputs with 2
decimals) are broken by the enumeration order; ``n_optimal_ties`` is not computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

TAG_SINGLETON = -1e6
MAX_EXACT_TASKS = 15


@dataclass(frozen=True)
class Grouping:
    """A set of groups and how it serves the tasks.

    ``groups``: tuples of task names, members in ``tasks`` order; groups sorted by size
    (largest first) then by member positions. ``objective``: mean over tasks of the served
    score (in the table's units; ``direction`` says whether higher is better).
    ``serving[t]``: the group that serves task t (its best group). ``task_score[t]``: t's score
    in that group. ``group_score[i]``: the estimated benefit of group i, the mean TAG score of
    the tasks it serves (NaN if a clustering-based group ends up serving none).
    ``group_member_score[i]``: every member's score in group i (the group's pairwise-estimated
    benefit for each of its tasks, served or not).
    """

    tasks: tuple[str, ...]
    groups: tuple[tuple[str, ...], ...]
    objective: float
    serving: dict[str, tuple[str, ...]]
    task_score: dict[str, float]
    group_score: tuple[float, ...]
    group_member_score: tuple[dict[str, float], ...]
    max_groups: int | None = None
    method: str = "exact"
    direction: str = "maximise"
    extra: dict = field(default_factory=dict)

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    def labels(self) -> np.ndarray:
        """Per task (``tasks`` order), the index of its serving group: a partition label."""
        index = {g: i for i, g in enumerate(self.groups)}
        return np.array([index[self.serving[t]] for t in self.tasks])

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "max_groups": self.max_groups,
            "direction": self.direction,
            "objective_mean_over_tasks": self.objective,
            "n_groups_used": self.n_groups,
            "groups": [list(g) for g in self.groups],
            "group_score": list(self.group_score),
            "group_member_score": [dict(m) for m in self.group_member_score],
            # Indices into "groups": the groups themselves, task by task, are megabytes at
            # hundreds of tasks.
            "serving_group": {t: int(i) for t, i in zip(self.tasks, self.labels())},
            "per_task_score": dict(self.task_score),
            **({"extra": self.extra} if self.extra else {}),
        }


def _check_table(table: np.ndarray, n: int) -> np.ndarray:
    table = np.asarray(table, dtype=float)
    if table.shape != (n, n):
        raise ValueError(
            f"table must be {n} x {n} (one row and column per task), got {table.shape}"
        )
    off = ~np.eye(n, dtype=bool)
    if not np.isfinite(table[off]).all():
        bad = [(int(i), int(j)) for i, j in zip(*np.nonzero(off & ~np.isfinite(table)))]
        raise ValueError(f"non-finite table entries (recipient, partner): {bad[:5]} ({len(bad)})")
    return table


def _singletons(table: np.ndarray, singleton: float | str) -> np.ndarray:
    n = table.shape[0]
    if isinstance(singleton, str):
        if singleton != "diagonal":
            raise ValueError(f"singleton must be a number or 'diagonal', got {singleton!r}")
        diag = np.diag(table).copy()
        if not np.isfinite(diag).all():
            raise ValueError("singleton='diagonal' needs a finite diagonal (single-task values)")
        return diag
    return np.full(n, float(singleton))


def member_scores(table: np.ndarray, group: Sequence[int], singleton: float | str = TAG_SINGLETON):
    """Scores of the members of ``group`` (task indices) under the TAG rule."""
    table = np.asarray(table, dtype=float)
    g = np.asarray(group, dtype=int)
    if g.size == 1:
        return _singletons(table, singleton)[g]
    sub = table[np.ix_(g, g)].copy()
    np.fill_diagonal(sub, 0.0)  # self-affinity is unused (and may be NaN)
    return sub.sum(axis=1) / (g.size - 1)


def evaluate(
    tasks: Sequence[str],
    table: np.ndarray,
    groups: Sequence[Sequence[str]],
    singleton: float | str = TAG_SINGLETON,
    direction: str = "maximise",
    max_groups: int | None = None,
    method: str = "given",
) -> Grouping:
    """The Grouping of a given set of groups: every task served by its best group. Every task
    must be in some group."""
    tasks = tuple(tasks)
    n = len(tasks)
    table = _check_table(table, n)
    sign = _sign(direction)
    position = {t: i for i, t in enumerate(tasks)}
    index_groups = []
    for group in groups:
        unknown = [t for t in group if t not in position]
        if unknown:
            raise ValueError(f"group {tuple(group)!r} has unknown task(s) {unknown}")
        members = tuple(sorted({position[t] for t in group}))
        if members and members not in index_groups:
            index_groups.append(members)
    index_groups.sort(key=lambda g: (-len(g), g))
    best = np.full(n, -np.inf)
    serving = np.full(n, -1)
    scores = []
    for gi, g in enumerate(index_groups):
        s = member_scores(table, g, singleton)
        scores.append(s)
        for t, value in zip(g, s):
            if sign * value > best[t]:
                best[t], serving[t] = sign * value, gi
    if (serving < 0).any():
        missing = [tasks[i] for i in np.flatnonzero(serving < 0)]
        raise ValueError(f"task(s) in no group: {missing}")
    return _grouping(tasks, index_groups, scores, serving, sign, max_groups, method, direction)


def _sign(direction: str) -> float:
    if direction not in ("maximise", "minimise"):
        raise ValueError(f"direction must be 'maximise' or 'minimise', got {direction!r}")
    return 1.0 if direction == "maximise" else -1.0


def _grouping(
    tasks, index_groups, scores, serving, sign, max_groups, method, direction, extra=None
):
    n = len(tasks)
    named = tuple(tuple(tasks[i] for i in g) for g in index_groups)
    task_score = {}
    for t in range(n):
        g = index_groups[serving[t]]
        task_score[tasks[t]] = float(scores[serving[t]][g.index(t)])
    served_by = {
        gi: [task_score[tasks[t]] for t in range(n) if serving[t] == gi]
        for gi in range(len(index_groups))
    }
    group_score = tuple(float(np.mean(v)) if v else float("nan") for v in served_by.values())
    return Grouping(
        tasks=tuple(tasks),
        groups=named,
        objective=float(np.mean([task_score[t] for t in tasks])),
        serving={tasks[t]: named[serving[t]] for t in range(n)},
        task_score=task_score,
        group_score=group_score,
        group_member_score=tuple(
            {tasks[i]: float(v) for i, v in zip(g, s)} for g, s in zip(index_groups, scores)
        ),
        max_groups=max_groups,
        method=method,
        direction=direction,
        extra=extra or {},
    )


# --- the exact solver -------------------------------------------------------------------------


def _group_scores(table: np.ndarray, singles: np.ndarray) -> np.ndarray:
    """S[mask, t] = score of task t in group ``mask`` (undefined where t is not a member)."""
    n = table.shape[0]
    off = table.copy()
    np.fill_diagonal(off, 0.0)
    full = 1 << n
    rowsum = np.zeros((full, n))
    size = np.zeros(full, dtype=np.int64)
    for bit in range(n):  # masks in [2^bit, 2^(bit+1)) add partner `bit` to the masks below
        lo, hi = 1 << bit, 1 << (bit + 1)
        rowsum[lo:hi] = rowsum[0:lo] + off[:, bit]
        size[lo:hi] = size[0:lo] + 1
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = rowsum / np.maximum(size - 1, 1)[:, None]
    for t in range(n):
        scores[1 << t, t] = singles[t]
    return scores, size


def _block_values(scores: np.ndarray, size: np.ndarray, n: int, eps: float):
    """v[B] and the smallest best superset of every block B (see module doc)."""
    full = 1 << n
    value = np.full(full, -np.inf)
    best_group = np.zeros(full, dtype=np.int64)
    for g in np.argsort(size, kind="stable")[1:]:  # by size: ties keep the smaller group
        members = [t for t in range(n) if g >> t & 1]
        sums = np.zeros(1)
        masks = np.zeros(1, dtype=np.int64)
        for t in members:
            sums = np.concatenate([sums, sums + scores[g, t]])
            masks = np.concatenate([masks, masks | (1 << t)])
        sums, masks = sums[1:], masks[1:]
        better = sums > value[masks] + eps
        value[masks[better]] = sums[better]
        best_group[masks[better]] = g
    return value, best_group


def _submask_table(n: int):
    """For every mask, the submasks that contain its lowest member (flattened, grouped by
    mask): candidates for the block that serves the lowest task of ``mask``."""
    owners, subs = [], []
    for mask in range(1, 1 << n):
        low = mask & -mask
        rest = mask ^ low
        # all submasks of rest, plus low
        s = rest
        chunk = []
        while True:
            chunk.append(s | low)
            if s == 0:
                break
            s = (s - 1) & rest
        owners.append(np.full(len(chunk), mask, dtype=np.int64))
        subs.append(np.array(chunk, dtype=np.int64))
    owners = np.concatenate(owners)
    subs = np.concatenate(subs)
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    return owners, subs, starts


_SUBMASK_CACHE: dict[int, tuple] = {}


def tag_exact(
    tasks: Sequence[str],
    table: np.ndarray,
    max_groups: Sequence[int] | None = None,
    singleton: float | str = TAG_SINGLETON,
    direction: str = "maximise",
    method: str = "exact",
) -> list[Grouping]:
    """The optimal <= k groups for every k in ``max_groups`` (default 1..n) under the TAG rule
    (module doc). ``table`` is recipient-major: ``table[t, o]`` = benefit of partner o for t."""
    tasks = tuple(tasks)
    n = len(tasks)
    if n == 0:
        raise ValueError("no tasks")
    if len(set(tasks)) != n:
        raise ValueError("task names must be unique")
    if n > MAX_EXACT_TASKS:
        raise ValueError(
            f"exact selection enumerates 3^n task subsets; {n} tasks is too many "
            f"(at most {MAX_EXACT_TASKS}); use a clustering method"
        )
    table = _check_table(table, n)
    sign = _sign(direction)
    ks = list(range(1, n + 1)) if max_groups is None else [int(k) for k in max_groups]
    bad = [k for k in ks if k < 1]
    if bad:
        raise ValueError(f"numbers of groups must be >= 1, got {bad}")
    singles = _singletons(table, singleton)
    work = sign * table
    scores, size = _group_scores(work, sign * singles)
    finite = np.abs(np.r_[work[~np.eye(n, dtype=bool)], sign * singles])
    eps = 1e-11 * max(float(finite.max()), 1e-300) * n
    value, best_group = _block_values(scores, size, n, eps)

    kmax = min(max(ks), n)
    full = (1 << n) - 1
    if n not in _SUBMASK_CACHE:
        _SUBMASK_CACHE[n] = _submask_table(n)
    owners, subs, starts = _SUBMASK_CACHE[n]
    # dp[j][mask]: best value of a partition of mask into exactly j blocks
    dp = [None, value.copy()]
    choice = [None, None]
    for j in range(2, kmax + 1):
        prev = dp[j - 1]
        rest = owners ^ subs
        cand = np.where(rest == 0, -np.inf, value[subs] + prev[rest])
        best = np.maximum.reduceat(cand, starts)
        # first candidate within eps of the best (deterministic tie-break)
        close = cand >= np.repeat(best, np.diff(np.r_[starts, cand.size])) - eps
        first = np.maximum.reduceat(np.where(close, -np.arange(cand.size), -cand.size), starts)
        row = np.full(1 << n, -np.inf)
        row[1:] = best
        pick = np.zeros(1 << n, dtype=np.int64)
        pick[1:] = subs[-first]
        dp.append(row)
        choice.append(pick)

    out = []
    for k in ks:
        top = min(k, n)
        totals = np.array([dp[j][full] for j in range(1, top + 1)])
        best_j = int(np.flatnonzero(totals >= totals.max() - eps)[0]) + 1
        blocks, mask = [], full
        for j in range(best_j, 1, -1):
            b = int(choice[j][mask])
            blocks.append(b)
            mask ^= b
        blocks.append(mask)
        groups = [tuple(t for t in range(n) if int(best_group[b]) >> t & 1) for b in blocks]
        grouping = evaluate(
            tasks,
            table,
            [[tasks[i] for i in g] for g in groups],
            singleton,
            direction,
            max_groups=k,
            method=method,
        )
        out.append(grouping)
    return out
