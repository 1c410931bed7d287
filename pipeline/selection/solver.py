"""The exact budgeted grouping solve, as a mixed-integer program solved by HiGHS (highspy).

Given networks n with cost c_n and a loss table L[n, t] (NaN where network n has no output for
task t), choose networks with sum c_n <= B + tolerance that cover every task and minimise
sum_t min_{chosen n containing t} L[n, t].

Formulation (an uncapacitated facility-location problem with a knapsack side constraint):

    x_n in {0, 1}             network n is deployed
    y_{t,n} in [0, 1]         task t is served by network n (only where L[n, t] is defined)
    sum_n y_{t,n} = 1         every task is served exactly once
    y_{t,n} <= x_n            only by a deployed network (disaggregated: the strong LP bound)
    sum_n c_n x_n <= B + tol  the budget
    minimise sum L[n, t] y_{t,n}

y need not be integral: for fixed x the assignment LP is solved by sending each task to its
cheapest deployed network, so some optimal y is 0/1 and we read the assignment off the argmax.
Both MIP gaps are set to 0 so the answer is optimal, not merely within HiGHS' default 1e-4 gap.

:class:`BudgetSolver` adds what keeps this exact at scale (bench/RESULTS_solver.md measures each
lever against :class:`PlainSolver`, the formulation above and nothing else):

* served subsets (_Model): networks with few tasks enter as one column per subset of
  their tasks they could serve, so the LP has one row per task, not one per (task, network);
* dominance: network A is dropped when some B costs no more, has every task of A and a loss no
  worse on each of them (swap A for B in any solution: no dearer, no worse), ties kept once;
* the cheapest cover is solved once (a set-cover MIP); budgets below it are answered from it
  without a MIP, and the cover is the first incumbent;
* warm starts: budgets are solved in increasing order and each optimum is handed to HiGHS as
  the incumbent of the next (a larger budget keeps it feasible);
* integral budgets: when every cost is a multiple of a common unit (Standley's 1 and 0.5) the
  budget row is scaled to integers and its bound rounded down, which tightens the LP bound;
* an optional time limit per budget: HiGHS' incumbent is returned with its proven gap.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import highspy
import numpy as np

from .scoring import total


class InfeasibleBudget(ValueError):
    """No set of networks within the budget covers every task."""


class NoIncumbent(RuntimeError):
    """The time limit stopped HiGHS before it found any choice within the budget."""


@dataclass(frozen=True)
class Solution:
    budget: float
    # Indices into the network axis, ascending; only networks that serve at least one task.
    chosen: tuple[int, ...]
    # Per task: the index of the chosen network that serves it on the selection table.
    assignment: tuple[int, ...]
    objective: float
    cost: float
    # Proven relative gap (objective - bound) / objective: 0 when optimal; > 0 only when a time
    # limit stopped HiGHS first. bound: the best proven lower bound on the objective.
    gap: float = 0.0
    bound: float = float("nan")

    @property
    def optimal(self) -> bool:
        return self.gap <= 0.0


def _highs(verbose: bool = False) -> highspy._Highs:
    # highspy.Highs() sets up its Python callbacks in the constructor, a HiGHS call that prints
    # the "Running HiGHS ... Copyright" banner before any option can be set (HiGHS issue
    # #1702). The core class it wraps (exported as highspy._Highs) calls nothing until told,
    # so output is off before the first call. We use none of the wrapper's extras (callbacks,
    # keyboard interrupt).
    h = highspy.Highs() if verbose else highspy._Highs()
    h.setOptionValue("output_flag", bool(verbose))
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_abs_gap", 0.0)
    # Budgets are compared exactly (the slack is cost_tolerance, explicit), not within HiGHS'
    # default 1e-6 MIP feasibility tolerance.
    h.setOptionValue("mip_feasibility_tolerance", 1e-9)
    h.setOptionValue("primal_feasibility_tolerance", 1e-9)
    # One thread: the workflow runs several jobs side by side on few cores.
    h.setOptionValue("threads", 1)
    # Measured on the 12-task sweep (bench/bench_solver.py): these models have a tight LP bound
    # (a handful of nodes), so presolve and the RINS/RENS sub-MIP heuristics cost more than they
    # save.
    h.setOptionValue("presolve", "off")
    h.setOptionValue("mip_heuristic_run_rins", False)
    h.setOptionValue("mip_heuristic_run_rens", False)
    return h


def _check(loss: np.ndarray, cost: np.ndarray) -> None:
    if loss.ndim != 2 or cost.shape != (loss.shape[0],):
        raise ValueError(
            f"loss must be networks x tasks and cost one per network: {loss.shape}, {cost.shape}"
        )
    if np.any(cost <= 0) or not np.all(np.isfinite(cost)):
        raise ValueError("every network cost must be finite and positive")
    defined = ~np.isnan(loss)
    if not np.all(np.isfinite(loss[defined])):
        raise ValueError("losses must be finite or NaN (NaN: the network has no such output)")
    uncovered = np.flatnonzero(~defined.any(axis=0))
    if uncovered.size:
        raise InfeasibleBudget(f"task column(s) {uncovered.tolist()} are served by no network")


def cost_unit(cost: np.ndarray, max_denominator: int = 1000) -> int | None:
    """The least D with every D * cost an integer (Standley's units: 2), or None."""
    scale = 1
    for c in np.unique(cost):
        frac = Fraction(float(c)).limit_denominator(max_denominator)
        if abs(float(frac) - c) > 1e-12 * max(1.0, c):
            return None
        scale = math.lcm(scale, frac.denominator)
        if scale > max_denominator:
            return None
    return scale


def dominated(
    loss: np.ndarray, cost: np.ndarray, estimated: np.ndarray | None = None
) -> np.ndarray:
    """Per network: True when another network makes it useless to the minimisation and to the
    tie-break (TieBreak): network A is dropped when some B costs no more, has every task of A
    and a loss no worse on each, and swapping A for B in any solution either lowers its
    objective or wins the tie-break. That holds when B is cheaper, or strictly better on every
    task of A, or equal on both and preferred (measured over estimated, fewer tasks, lower
    index). Equal cost with B better on some tasks only keeps A: A may serve just the others."""
    defined = ~np.isnan(loss)
    n_net = loss.shape[0]
    est = np.zeros(n_net, dtype=bool) if estimated is None else np.asarray(estimated, dtype=bool)
    n_tasks = defined.sum(axis=1)
    masks = [int(sum(1 << int(t) for t in np.flatnonzero(row))) for row in defined]
    by_mask: dict[int, list[int]] = {}
    for n, m in enumerate(masks):
        by_mask.setdefault(m, []).append(n)
    distinct = list(by_mask)
    # Up to 62 tasks a mask is an int64: the subsets of a large network are found by one numpy
    # test over the distinct masks (Python loops took 9 s on 3,185 networks of 9-17 tasks).
    distinct_np = np.array(distinct, dtype=np.int64) if loss.shape[1] <= 62 else None
    pairs_a: list[int] = []
    pairs_b: list[int] = []
    for m_b, nets_b in by_mask.items():
        k = m_b.bit_count()
        if k <= 6 or (distinct_np is None and k <= 16 and (1 << k) <= 4 * len(distinct)):
            bits = [1 << i for i in range(m_b.bit_length()) if m_b >> i & 1]
            subsets = (
                sum(b for b, keep in zip(bits, choice) if keep)
                for choice in itertools.product((0, 1), repeat=k)
            )
            subs = [s for s in subsets if s and s in by_mask]
        elif distinct_np is not None:
            subs = distinct_np[(distinct_np & ~np.int64(m_b)) == 0].tolist()
        else:
            subs = [m for m in distinct if m & ~m_b == 0]
        for m_a in subs:
            for a in by_mask[m_a]:
                for b in nets_b:
                    if a != b:
                        pairs_a.append(a)
                        pairs_b.append(b)
    out = np.zeros(n_net, dtype=bool)
    if not pairs_a:
        return out
    a = np.array(pairs_a)
    b = np.array(pairs_b)
    on_a = defined[a]
    la = np.where(on_a, loss[a], 0.0)
    lb = np.where(on_a, loss[b], 0.0)
    weak = (cost[b] <= cost[a]) & np.all(lb <= la, axis=1)
    strict = np.all(~on_a | (lb < la), axis=1)
    equal = (cost[b] == cost[a]) & np.all(lb == la, axis=1)
    # The tie-break's order past cost: measured first, then fewer tasks, then the lower index
    # (a strict total order, so of equals exactly one survives).
    preferred = (est[b] < est[a]) | (
        (est[b] == est[a]) & ((n_tasks[b] < n_tasks[a]) | ((n_tasks[b] == n_tasks[a]) & (b < a)))
    )
    hit = weak & ((cost[b] < cost[a]) | strict | (equal & preferred))
    out[a[hit]] = True
    return out


def task_cost_bound(loss: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Per task, the least cost per task of any network with it: covering a set of tasks costs
    at least the sum of these (a fractional set-cover bound, free to compute)."""
    defined = ~np.isnan(np.asarray(loss, dtype=float))
    share = np.asarray(cost, dtype=float) / np.maximum(defined.sum(axis=1), 1)
    return np.where(defined, share[:, None], np.inf).min(axis=0)


@dataclass(frozen=True)
class Cover:
    """Bounds on the cheapest set of networks covering every task: no cover costs less than
    ``lower``; ``chosen`` is one that costs ``upper``. Proven cheapest when they are equal."""

    lower: float
    upper: float
    chosen: tuple[int, ...]

    @property
    def cost(self) -> float:
        return self.upper


def _greedy_cover(defined: np.ndarray, cost: np.ndarray, loss: np.ndarray) -> list[int]:
    """Chvatal's greedy set cover: least cost per newly covered task, then least loss."""
    uncovered = np.ones(defined.shape[1], dtype=bool)
    total = np.where(defined, loss, 0.0).sum(axis=1)
    chosen: list[int] = []
    while uncovered.any():
        new = defined[:, uncovered].sum(axis=1)
        ratio = np.where(new > 0, cost / np.maximum(new, 1), np.inf)
        best = np.flatnonzero(ratio <= ratio.min() * (1 + 1e-12))
        n = int(best[np.argmin(total[best])])
        chosen.append(n)
        uncovered &= ~defined[n]
    return chosen


def cheapest_cover_set(
    loss: np.ndarray,
    cost: np.ndarray,
    verbose: bool = False,
    time_limit: float | None = 10.0,
) -> Cover:
    """Bounds on the weighted set cover (Cover). The LP bound, rounded up to the cost unit when
    costs have one, and a greedy cover usually meet (Standley's units: all triples); only if
    they do not is the set-cover MIP run, for at most ``time_limit`` seconds. Solving that MIP
    outright took 268 s on 50 tasks + triples, where the bounds meet at once."""
    loss = np.asarray(loss, dtype=float)
    defined = ~np.isnan(loss)
    cost = np.asarray(cost, dtype=float)
    n_net, n_task = defined.shape
    if not defined.any(axis=0).all():
        raise InfeasibleBudget("no set of networks covers every task")
    chosen = _greedy_cover(defined, cost, loss)
    upper = float(cost[chosen].sum())
    nets, tasks = np.nonzero(defined)
    lp = _lp(
        obj=cost,
        col_lo=np.zeros(n_net),
        col_hi=np.ones(n_net),
        rows=tasks,
        cols=nets,
        vals=np.ones(nets.size),
        row_lo=np.ones(n_task),
        row_hi=np.full(n_task, highspy.kHighsInf),
        n_binary=0,
    )
    h = _highs(verbose)
    h.passModel(lp)
    h.run()
    lower = float(h.getInfo().objective_function_value)
    unit = cost_unit(cost)
    if unit:
        lower = math.ceil(lower * unit - 1e-7) / unit
    if lower < upper - 1e-9:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * n_net
        h.passModel(lp)
        start = highspy.HighsSolution()
        start.col_value = np.isin(np.arange(n_net), chosen).astype(float)
        start.value_valid = True
        h.setSolution(start)
        h.setOptionValue("time_limit", float(time_limit) if time_limit else highspy.kHighsInf)
        h.run()
        info = h.getInfo()
        if h.getModelStatus() == highspy.HighsModelStatus.kOptimal:
            lower = upper = float(info.objective_function_value)
        else:
            lower = max(lower, float(info.mip_dual_bound))
            upper = min(upper, float(info.objective_function_value))
        x = np.asarray(h.getSolution().col_value)
        if cost[x > 0.5].sum() <= upper + 1e-9 and defined[x > 0.5].any(axis=0).all():
            chosen = np.flatnonzero(x > 0.5).tolist()
            upper = float(cost[chosen].sum())
    return Cover(lower, upper, tuple(int(n) for n in sorted(chosen)))


def cheapest_cover(loss: np.ndarray, cost: np.ndarray) -> float:
    """The least total cost of networks covering every task (a weighted set cover)."""
    return cheapest_cover_set(loss, cost, time_limit=None).upper


def _assignment(loss: np.ndarray, chosen: Sequence[int]) -> np.ndarray:
    """Per task, the chosen network with its least loss (first on ties)."""
    idx = np.asarray(chosen, dtype=int)
    sub = np.where(np.isnan(loss[idx]), np.inf, loss[idx])
    return idx[np.argmin(sub, axis=0)]


# The least seconds a budget gets from solve_all's shared total once it is spent: HiGHS then
# hands back the incumbent it was given (an earlier budget's answer, the cover, OS's answer).
MIN_SHARE_S = 0.001

# TieBreak: objectives within this relative margin are tied (HiGHS' feasibility tolerance, set
# in _highs, so no finer difference is provable), and the largest combined integer weight.
TIE_TOLERANCE = 1e-9
TIE_WEIGHT_MAX = 1e7

# Networks with at most this many tasks enter the MIP as one column per subset of their tasks
# (2^k - 1 of them); larger ones as facility-location blocks (_Model). Measured on the
# planted instances: 4 keeps the 12-task demo's all-in-one network out (4,095 subsets) and every
# pair and triple in.
SUBSET_MAX_TASKS = 4


class _Model:
    """The MIP over a table of networks: a set partitioning with a budget row.

    A choice of networks with its best assignment is a partition of the tasks into served sets,
    one per deployed network. So each network n with few tasks enters as one binary column per
    non-empty subset S of its tasks it could serve, worth sum_{t in S} L[n, t] at cost c_n, and
    every task row says it is served exactly once. Of the columns with one served set and one
    cost only the least loss is kept: which network serves S is then read off the column (the
    best of them), and any solution of the original problem maps to one here at no more loss or
    cost (and back: deploy each column's network). Networks with more tasks enter as the
    module doc's facility-location block (x_n, y_{t,n} <= x_n), their y in the same task rows;
    with ``subset_max`` 0 that is every network: the plain formulation.

    The LP bound is the facility-location one (a fractional y is a mix of served subsets), but
    the LP has one row per task instead of one per (task, network): 51 rows against 59,055 on
    50 tasks + triples, where the tight budget went from minutes to seconds
    (bench/RESULTS_solver.md).
    """

    def __init__(
        self,
        loss: np.ndarray,
        cost: np.ndarray,
        unit: int | None,
        verbose: bool,
        presolve: bool = False,
        subset_max: int = SUBSET_MAX_TASKS,
        estimated: np.ndarray | None = None,
    ) -> None:
        n_net, n_task = loss.shape
        self.n_net, self.n_task, self.unit = n_net, n_task, unit
        defined = ~np.isnan(loss)
        size = defined.sum(axis=1)
        est = np.zeros(n_net, dtype=bool) if estimated is None else np.asarray(estimated, bool)
        n_costs = np.unique(np.round(cost * 1e9)).size
        if float(n_task + 1) ** min(subset_max, int(size.max(initial=1))) * n_costs >= 2.0**62:
            # Served sets would not fit the 63-bit codes of _code: facility blocks only (the
            # same optimum, slower). Needs tens of thousands of tasks.
            subset_max = 0
        self.small = size <= subset_max
        width = max(1, min(subset_max, int(size.max(initial=1))))
        keys, values, owners = [], [], []
        for k in np.unique(size[self.small]):
            nets = np.flatnonzero(size == k)
            tasks = np.nonzero(defined[nets])[1].reshape(nets.size, k)
            task_loss = loss[nets[:, None], tasks]
            for r in range(1, k + 1):
                for pick in itertools.combinations(range(k), r):
                    served = np.full((nets.size, width), -1)
                    served[:, :r] = tasks[:, list(pick)]
                    keys.append(np.column_stack([served, np.round(cost[nets] * 1e9)]))
                    values.append(task_loss[:, list(pick)].sum(axis=1))
                    owners.append(nets)
        if keys:
            key, value, owner = np.concatenate(keys), np.concatenate(values), np.concatenate(owners)
            # Per (served set, cost) the least loss, on ties the network TieBreak prefers:
            # measured, then fewer tasks, then the lowest index.
            order = np.lexsort((owner, size[owner], est[owner], value, *key.T[::-1]))
            key, value, owner = key[order], value[order], owner[order]
            first = np.r_[True, np.any(key[1:] != key[:-1], axis=1)]
            key, value, owner = key[first], value[first], owner[first]
        else:
            key, value, owner = np.zeros((0, width + 1)), np.zeros(0), np.zeros(0, dtype=int)
        served = key[:, :width].astype(int)
        self.col_net = owner
        # Each column's (served set, cost) as one integer, sorted, to find a warm start's
        # columns by binary search (a dict of tuples would hold ~200 B per column).
        self.width, self.base = width, n_task + 1
        self.costs, cost_rank = np.unique(key[:, width], return_inverse=True)
        codes = self._code(served, cost_rank)
        self.code_order = np.argsort(codes, kind="stable")
        self.sorted_codes = codes[self.code_order]
        n_sub = owner.size
        # The large networks: x columns, then y columns, then their link rows.
        self.big = np.flatnonzero(~self.small)
        y_big, y_task = np.nonzero(defined[self.big])
        self.y_net, self.y_task = self.big[y_big], y_task
        n_x, n_y = self.big.size, y_task.size
        x_cols = n_sub + np.arange(n_x)
        y_cols = n_sub + n_x + np.arange(n_y)
        link_rows = n_task + np.arange(n_y)
        self.budget_row = n_task + n_y
        row_cost = np.round(cost * unit) if unit else cost
        sub_rows = served[served >= 0]
        sub_cols = np.repeat(np.arange(n_sub), (served >= 0).sum(axis=1))
        rows = np.concatenate(
            [
                sub_rows,
                y_task,
                link_rows,
                link_rows,
                np.full(n_sub + n_x, self.budget_row),
            ]
        )
        cols = np.concatenate([sub_cols, y_cols, y_cols, x_cols[y_big], np.arange(n_sub + n_x)])
        vals = np.concatenate(
            [np.ones(sub_rows.size + 2 * n_y), -np.ones(n_y), row_cost[owner], row_cost[self.big]]
        )
        self.n_sub, self.n_x = n_sub, n_x
        self.obj_y = loss[self.y_net, self.y_task]
        n_col = n_sub + n_x + n_y
        self.highs = _highs(verbose)
        self.verbose, self.presolve = verbose, presolve
        if presolve:
            self.highs.setOptionValue("presolve", "on")
        # Per column, the network it deploys (-1: a y column), for the tie-break criteria.
        self.deploys = np.concatenate([owner, self.big, np.full(n_y, -1)]).astype(int)
        self.row_cost, self.est, self.size = row_cost, est, size
        self.lp = _lp(
            obj=np.concatenate([value, np.zeros(n_x), self.obj_y]),
            col_lo=np.zeros(n_col),
            col_hi=np.ones(n_col),
            rows=rows,
            cols=cols,
            vals=vals,
            row_lo=np.concatenate([np.ones(n_task), np.full(n_y, -highspy.kHighsInf), [0.0]]),
            row_hi=np.concatenate(
                [
                    np.ones(n_task),
                    np.zeros(n_y),
                    [row_cost[owner].sum() + row_cost[self.big].sum()],
                ]
            ),
            n_binary=n_sub + n_x,
        )
        self.highs.passModel(self.lp)
        self.loss, self.cost = loss, cost

    def run(
        self,
        limit: float,
        start: np.ndarray | None,
        time_limit: float | None,
        off: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float, float, float] | None:
        """Solve with total cost <= limit; (x, objective, bound, gap) or None if infeasible.
        ``start``: a feasible 0/1 x handed to HiGHS as its first incumbent; ``off``: per
        network, True where no choice within the limit can hold it (fixed to 0 for this run)."""
        h = self.highs
        fixed = np.zeros(0, dtype=np.int32)
        if off is not None and off.any():
            fixed = self._columns_of(off)
            h.changeColsBounds(fixed.size, fixed, np.zeros(fixed.size), np.zeros(fixed.size))
        try:
            return self._run(limit, start, time_limit)
        finally:
            if fixed.size:
                h.changeColsBounds(fixed.size, fixed, np.zeros(fixed.size), np.ones(fixed.size))

    def _columns_of(self, off: np.ndarray) -> np.ndarray:
        """The columns (subset, x and y) of the networks marked in ``off``."""
        return np.flatnonzero(
            np.concatenate([off[self.col_net], off[self.big], off[self.y_net]])
        ).astype(np.int32)

    def _run(
        self, limit: float, start: np.ndarray | None, time_limit: float | None
    ) -> tuple[np.ndarray, float, float, float] | None:
        h = self.highs
        bound = math.floor(limit * self.unit + 1e-9) if self.unit else limit
        h.changeRowBounds(self.budget_row, 0.0, float(bound))
        h.setOptionValue("time_limit", float(time_limit) if time_limit else highspy.kHighsInf)
        if start is not None:
            solution = highspy.HighsSolution()
            solution.col_value = self._full(start)
            solution.value_valid = True
            h.setSolution(solution)
        h.run()
        status = h.getModelStatus()
        if status == highspy.HighsModelStatus.kInfeasible:
            return None
        info = h.getInfo()
        has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
        if status == highspy.HighsModelStatus.kTimeLimit and not has_solution:
            raise NoIncumbent(f"no choice found within {time_limit:.3g} s (the time limit)")
        if status != highspy.HighsModelStatus.kOptimal and not (
            status in (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kInterrupt)
            and has_solution
        ):
            raise RuntimeError(f"HiGHS stopped with {h.modelStatusToString(status)}")
        x = self._networks(np.asarray(h.getSolution().col_value))
        objective = float(info.objective_function_value)
        if status == highspy.HighsModelStatus.kOptimal:
            return x, objective, objective, 0.0
        return x, objective, float(info.mip_dual_bound), float(info.mip_gap)

    def tie_break(
        self,
        limit: float,
        objective: float,
        time_limit: float | None,
        off: np.ndarray | None = None,
    ) -> np.ndarray:
        """x of the solution TieBreak prefers among those whose objective is at most
        ``objective``, the optimum run just proved; its solution is the first incumbent."""
        col = np.asarray(self.highs.getSolution().col_value)
        h = _highs(self.verbose)
        if self.presolve:
            h.setOptionValue("presolve", "on")
        h.passModel(self.lp)
        bound = math.floor(limit * self.unit + 1e-9) if self.unit else limit
        h.changeRowBounds(self.budget_row, 0.0, float(bound))
        h.setOptionValue("time_limit", float(time_limit) if time_limit else highspy.kHighsInf)
        if off is not None and off.any():
            fixed = self._columns_of(off)
            h.changeColsBounds(fixed.size, fixed, np.zeros(fixed.size), np.zeros(fixed.size))
        n_col = col.size
        primary = np.asarray(self.lp.col_cost_)
        # Objectives equal to HiGHS' feasibility tolerance are ties: what the MIP can tell apart.
        _add_row(h, primary, objective + TIE_TOLERANCE * max(1.0, abs(objective)))
        cols = np.flatnonzero(self.deploys >= 0)
        nets = self.deploys[cols]
        ones = np.ones(cols.size)
        # Criteria in order, over the deploying columns: (coefficients, integral).
        criteria = [(ones, True)]
        if np.unique(self.row_cost[nets]).size > 1:  # equal costs: cost is count x cost
            criteria.append((np.asarray(self.row_cost[nets], dtype=float), bool(self.unit)))
        if self.est[nets].any():
            criteria.append((self.est[nets].astype(float), True))
        criteria.append((self.size[nets].astype(float), True))
        # Only solutions deploying no more networks than this one can win: that bounds the
        # range of every integral criterion, so consecutive ones combine into one objective
        # with exact integer weights (up to TIE_WEIGHT_MAX).
        deployed = int(round(col[cols].sum()))
        _add_row(h, _spread(ones, cols, n_col), float(deployed))
        groups: list[tuple[np.ndarray, bool]] = []
        for coef, integral in criteria:
            top = deployed * float(coef.max(initial=0.0))
            if groups and groups[-1][1] and integral:
                weights = groups[-1][0] * (top + 1) + coef
                if deployed * weights.max(initial=0.0) <= TIE_WEIGHT_MAX:
                    groups[-1] = (weights, True)
                    continue
            groups.append((coef, integral))
        for g, (coef, integral) in enumerate(groups):
            full = _spread(coef, cols, n_col)
            h.changeColsCost(n_col, np.arange(n_col, dtype=np.int32), full)
            start = highspy.HighsSolution()
            start.col_value = col
            start.value_valid = True
            h.setSolution(start)
            h.run()
            status = h.getModelStatus()
            if h.getInfo().primal_solution_status == 2:
                col = np.asarray(h.getSolution().col_value)
            if status != highspy.HighsModelStatus.kOptimal:
                break  # the time limit: keep the best tie found so far (still optimal)
            if g + 1 < len(groups):
                value = float(full @ col)
                slack = 0.5 if integral else TIE_TOLERANCE * max(1.0, abs(value))
                _add_row(h, full, value + slack)
        return self._networks(col)

    def _code(self, served: np.ndarray, cost_rank: np.ndarray) -> np.ndarray:
        powers = self.base ** np.arange(self.width, dtype=np.int64)
        return ((served.astype(np.int64) + 1) @ powers) * max(1, self.costs.size) + cost_rank

    def _networks(self, col_value: np.ndarray) -> np.ndarray:
        """0/1 per network from a column vector: a subset column deploys its network."""
        x = np.zeros(self.n_net)
        x[self.col_net[col_value[: self.n_sub] > 0.5]] = 1.0
        x[self.big] = col_value[self.n_sub : self.n_sub + self.n_x]
        return x

    def _full(self, x: np.ndarray) -> np.ndarray:
        """A deployment x as a full column vector: each deployed network's served set as its
        column (of that set and cost, the best), the large ones as x and y."""
        deployed = np.flatnonzero(x > 0.5)
        serving = _assignment(self.loss, deployed)
        col = np.zeros(self.n_sub + self.n_x + self.y_net.size)
        for n in np.unique(serving):
            if not self.small[n]:
                continue
            served = np.full((1, self.width), -1)
            tasks = np.flatnonzero(serving == n)
            served[0, : tasks.size] = tasks
            rank = np.searchsorted(self.costs, np.round(self.cost[n] * 1e9))
            code = self._code(served, np.array([rank]))
            at = np.searchsorted(self.sorted_codes, code)
            # Every served set of a deployed small network has its (set, cost) column.
            assert at[0] < self.sorted_codes.size and self.sorted_codes[at[0]] == code[0]
            col[self.code_order[at]] = 1.0
        is_big = np.isin(deployed, self.big)
        col[self.n_sub + np.searchsorted(self.big, deployed[is_big])] = 1.0
        on = np.isin(self.y_net, deployed) & (serving[self.y_task] == self.y_net)
        col[self.n_sub + self.n_x + np.flatnonzero(on)] = 1.0
        return col


class BudgetSolver:
    """One loss table, many budgets: reduce and build the MIP once, re-solve per budget (module
    doc). ``reduce``, ``warm_start``, ``integral_budget`` and ``subsets`` switch the levers off for
    comparison; ``time_limit`` (seconds per budget) makes the solve anytime."""

    def __init__(
        self,
        loss: np.ndarray,
        cost: np.ndarray,
        tolerance: float = 0.0,
        *,
        reduce: bool = True,
        warm_start: bool = True,
        integral_budget: bool = True,
        cover_bound: bool = True,
        subsets: bool = True,
        subset_max: int = SUBSET_MAX_TASKS,
        time_limit: float | None = None,
        verbose: bool = False,
        estimated: np.ndarray | None = None,
        tie_break: bool = True,
    ) -> None:
        loss = np.asarray(loss, dtype=float)
        cost = np.asarray(cost, dtype=float)
        _check(loss, cost)
        self.loss, self.cost, self.tolerance = loss, cost, float(tolerance)
        self.warm_start, self.time_limit, self.tie_break = warm_start, time_limit, tie_break
        est = np.zeros(len(cost), dtype=bool) if estimated is None else np.asarray(estimated, bool)
        self.kept = np.flatnonzero(~dominated(loss, cost, est)) if reduce else np.arange(len(cost))
        sub_loss, sub_cost = loss[self.kept], cost[self.kept]
        self.cover: Cover | None = None
        if cover_bound or warm_start:
            cover = cheapest_cover_set(sub_loss, sub_cost, verbose)
            self.cover = Cover(
                cover.lower, cover.upper, tuple(int(self.kept[i]) for i in cover.chosen)
            )
        unit = cost_unit(sub_cost) if integral_budget else None
        # Presolve: off pays on the 12-task sweep (see _highs); on, the facility-location model
        # is 3x faster at the tight budgets of 30+ tasks with triples, the subset model 3x
        # slower at 50 tasks (bench/RESULTS_solver.md).
        self.model = _Model(
            sub_loss,
            sub_cost,
            unit,
            verbose,
            presolve=not subsets and self.kept.size > 1000,
            subset_max=subset_max if subsets else 0,
            estimated=est[self.kept],
        )
        self._best: list[Solution] = []  # solved so far, for warm starts
        self._masks: np.ndarray | None = None  # kept networks' task sets as int64 bits

    def _start(self, limit: float, hint: Sequence[int] | None = None) -> np.ndarray | None:
        """The best known choice within ``limit``: an earlier optimum, the cheapest cover or
        ``hint`` (network indices), whichever has the least objective here."""
        if not self.warm_start:
            return None
        options = [s.chosen for s in self._best if s.cost <= limit + 1e-9]
        if self.cover is not None and self.cover.cost <= limit + 1e-9:
            options.append(self.cover.chosen)
        if hint is not None:
            # Dropped networks are dominated here: the rest may still cover every task.
            hint = [int(n) for n in np.intersect1d(hint, self.kept)]
            covers = (~np.isnan(self.loss[hint])).any(axis=0).all() if hint else False
            if covers and self.cost[hint].sum() <= limit + 1e-9:
                options.append(tuple(hint))
        if not options:
            return None
        chosen = min(options, key=lambda c: total(self.loss, list(c)))
        x = np.zeros(self.kept.size)
        x[np.searchsorted(self.kept, chosen)] = 1.0
        return x

    def solve(self, budget: float, hint: Sequence[int] | None = None) -> Solution:
        """The optimal choice within ``budget`` (+ tolerance); InfeasibleBudget if none exists.
        ``hint``: a choice (network indices) to start from if it is feasible."""
        limit = float(budget) + self.tolerance
        if self.cover is not None and limit < self.cover.lower - 1e-9:
            raise self._infeasible(budget)
        began = time.perf_counter()
        off = self._cannot_fit(limit)
        result = self.model.run(limit, self._start(limit, hint), self.time_limit, off)
        if result is None:
            raise self._infeasible(budget)
        x, objective, bound, gap = result
        if self.tie_break and gap <= 0.0:
            left = None
            if self.time_limit:
                left = max(self.time_limit - (time.perf_counter() - began), 0.01)
            x = self.model.tie_break(limit, objective, left, off)
        chosen = self.kept[np.flatnonzero(x > 0.5)]
        assignment = _assignment(self.loss, chosen)
        # Deploy only networks that serve a task: an unused one can only cost budget, and
        # scoring on test takes the min over every deployed network, so it must not linger.
        used = np.unique(assignment)
        n_task = self.loss.shape[1]
        objective = float(self.loss[assignment, np.arange(n_task)].sum())
        solution = Solution(
            float(budget),
            tuple(used.tolist()),
            tuple(assignment.tolist()),
            objective,
            float(self.cost[used].sum()),
            gap=max(0.0, gap),
            bound=bound,
        )
        self._best.append(solution)
        return solution

    def solve_all(
        self,
        budgets: Iterable[float],
        hints: Sequence[Sequence[int] | None] | None = None,
        total_time: float | None = None,
    ) -> list[Solution | NoIncumbent | None]:
        """One solution per budget, None where infeasible, NoIncumbent where the time limit
        stopped HiGHS before any choice; solved in increasing order so that each optimum
        warm-starts the next. ``hints``: per budget, a choice to start from. ``total_time``:
        seconds for all budgets together, each getting at most half of what is left (what an
        easy budget leaves goes to the others), within ``time_limit`` per budget."""
        budgets = list(budgets)
        out: list[Solution | NoIncumbent | None] = [None] * len(budgets)
        order = sorted(range(len(budgets)), key=lambda i: budgets[i])
        per_budget, began = self.time_limit, time.perf_counter()
        try:
            for k, i in enumerate(order):
                if total_time is not None:
                    # Up to half of what is left (the last budget: all of it): the first
                    # budgets to be solved, the tightest, are the hard ones, and a root LP
                    # cut short proves nothing.
                    left = total_time - (time.perf_counter() - began)
                    share = left / min(2, len(order) - k)
                    self.time_limit = max(min(share, per_budget or math.inf), MIN_SHARE_S)
                try:
                    out[i] = self.solve(budgets[i], hints[i] if hints is not None else None)
                except InfeasibleBudget:
                    out[i] = None
                except NoIncumbent as err:
                    out[i] = err
        finally:
            self.time_limit = per_budget
        return out

    def _cannot_fit(self, limit: float) -> np.ndarray | None:
        """Per kept network, True where no choice within ``limit`` holds it: what is left
        after it buys no other network and it lacks a task, or buys at most one and no network
        within that has every task it lacks. Cheap, and what makes a budget of one network
        (27 tasks, 3,185 networks: every one but the all-task network) instant."""
        n_task = self.loss.shape[1]
        if n_task > 62:
            return None
        unit = self.model.unit
        limit = math.floor(limit * unit + 1e-9) / unit if unit else limit
        if self._masks is None:
            bits = np.int64(1) << np.arange(n_task, dtype=np.int64)
            self._masks = (~np.isnan(self.loss[self.kept])) @ bits
        masks, cost = self._masks, self.cost[self.kept]
        full = np.int64((1 << n_task) - 1)
        left = limit - cost + 1e-9
        cheapest = cost.min()
        off = (left < cheapest) & (masks != full)
        for n in np.flatnonzero((left >= cheapest) & (left < 2 * cheapest) & (masks != full)):
            lacks = full & ~masks[n]
            off[n] = not np.any(((lacks & ~masks) == 0) & (cost <= left[n]))
        return off

    def _infeasible(self, budget: float) -> InfeasibleBudget:
        need = self.cover.lower if self.cover else cheapest_cover(self.loss, self.cost)
        return InfeasibleBudget(
            f"budget {budget:g} (+ tolerance {self.tolerance:g}) is below the cheapest set of "
            f"networks covering every task, which costs {need:.6g}"
        )


class PlainSolver(BudgetSolver):
    """The formulation alone (no dominance, warm start or integral budget): the reference the
    benchmark and the tests compare BudgetSolver against."""

    def __init__(self, loss: np.ndarray, cost: np.ndarray, tolerance: float = 0.0, **kw) -> None:
        super().__init__(
            loss,
            cost,
            tolerance,
            reduce=False,
            warm_start=False,
            integral_budget=False,
            cover_bound=False,
            subsets=False,
            **kw,
        )


def solve(loss: np.ndarray, cost: np.ndarray, budget: float, tolerance: float = 0.0) -> Solution:
    """The optimal network choice for one budget (see the module docstring)."""
    return BudgetSolver(loss, cost, tolerance).solve(budget)


def solve_budgets(
    loss: np.ndarray,
    cost: np.ndarray,
    budgets: Iterable[float],
    tolerance: float = 0.0,
    time_limit: float | None = None,
) -> list[Solution | NoIncumbent | None]:
    """One solution per budget; None where the budget is below the cheapest cover, NoIncumbent
    where ``time_limit`` (seconds per budget) ran out before any choice. Budgets are solved in
    increasing order, each optimum warm-starting the next."""
    return BudgetSolver(loss, cost, tolerance, time_limit=time_limit).solve_all(budgets)


class WorstCover:
    """The worst *maximal* cover: among covering sets whose unspent budget is below the cheapest
    network's cost (no network could still be added: the support of Standley's random sampler),
    the one maximising sum_t min_{chosen n containing t} L[n, t]. One model per loss table,
    re-solved per budget (only the budget row changes).

    Maximising a sum of minima needs the minimum pinned down, which big-M rows do only weakly
    (minutes on 300 networks). Instead, per task t, sort its networks by loss l_1 <= ... <= l_k
    and let v_i = 1 when none of the i-1 best is deployed (v_1 = 1). Then the task's loss is
    l_1 + sum_{i>=2} (l_i - l_{i-1}) v_i, with
        v_i - v_{i+1} <= x_{n_i}   (the first deployed network is where v drops)
        x_{n_i} + v_{i+1} <= 1     (after a deployed network, v is 0)
        v_{i+1} <= v_i             (v only drops), v_{k+1} = 0 (some network serves t).
    With costs in a common unit (Standley's 1 and 0.5) the budget row is scaled to integers
    and both its bounds rounded inwards, as in BudgetSolver: the same feasible sets, a tighter
    LP (the exact-cover budget becomes an equality).
    """

    def __init__(self, loss: np.ndarray, cost: np.ndarray, tolerance: float = 0.0) -> None:
        loss = np.asarray(loss, dtype=float)
        cost = np.asarray(cost, dtype=float)
        self.loss, self.cost, self.tolerance = loss, cost, float(tolerance)
        n_net, n_task = loss.shape
        self.n_net = n_net
        self.uncoverable = bool(np.isnan(loss).all(axis=0).any())
        self.need = float("inf") if self.uncoverable else float(task_cost_bound(loss, cost).sum())
        self.highs: highspy._Highs | None = None
        if self.uncoverable or n_net == 0:
            return
        self.unit = cost_unit(cost)
        # Per task, its networks by loss (stable): position i in the task's list.
        defined = ~np.isnan(loss)
        task_of, net_of = np.nonzero(defined.T)  # grouped by task, networks ascending
        key = np.where(defined.T, loss.T, np.inf)[task_of, net_of]
        order = np.lexsort((net_of, key, task_of))  # by task, then loss, then network
        task_of, net_of = task_of[order], net_of[order]
        k = defined.sum(axis=0)
        start = np.r_[0, np.cumsum(k)[:-1]]
        pos = np.arange(task_of.size) - start[task_of]  # 0-based i in the task's list
        lsorted = loss[net_of, task_of]
        # v columns: one per (task, i >= 1), numbered after the x columns in entry order.
        has_v = pos >= 1
        v_col = np.full(task_of.size, -1)
        v_col[has_v] = n_net + np.arange(has_v.sum())
        n_col = n_net + int(has_v.sum())
        obj = np.zeros(n_col)
        obj[v_col[has_v]] = lsorted[has_v] - lsorted[np.flatnonzero(has_v) - 1]
        # Entry e (task t, position i) has here = v_i (column v_col[e], or the constant 1 at
        # i = 0) and after = v_{i+1} (v_col[e + 1] when i + 1 < k_t, else the constant 0).
        last = pos == k[task_of] - 1
        after = np.where(last, -1, np.r_[v_col[1:], -1])
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        lo: list[np.ndarray] = []
        hi: list[np.ndarray] = []
        n_row = 0

        def block(entries: list[tuple[np.ndarray, np.ndarray, float]], upper: np.ndarray) -> None:
            # One row per selected entry; entries: (mask over the rows, column, coefficient).
            nonlocal n_row
            m = upper.size
            r = n_row + np.arange(m)
            for mask, col, coef in entries:
                rows.append(r[mask])
                cols.append(col[mask])
                vals.append(np.full(int(mask.sum()), coef))
            lo.append(np.full(m, -highspy.kHighsInf))
            hi.append(upper)
            n_row += m

        # v_i - v_{i+1} - x_{n_i} <= 0 (with v_1 = 1 moved to the bound: <= -1).
        every = np.ones(task_of.size, dtype=bool)
        block(
            [(every, net_of, -1.0), (has_v, v_col, 1.0), (~last, after, -1.0)],
            np.where(has_v, 0.0, -1.0),
        )
        # x_{n_i} + v_{i+1} <= 1, where v_{i+1} is a column.
        sel = np.flatnonzero(~last)
        ones = np.ones(sel.size, dtype=bool)
        block([(ones, net_of[sel], 1.0), (ones, after[sel], 1.0)], np.ones(sel.size))
        # v_{i+1} - v_i <= 0, where both are columns.
        sel = np.flatnonzero(~last & has_v)
        ones = np.ones(sel.size, dtype=bool)
        block([(ones, after[sel], 1.0), (ones, v_col[sel], -1.0)], np.zeros(sel.size))
        # The budget row (bounds set per budget).
        self.budget_row = n_row
        row_cost = np.round(cost * self.unit) if self.unit else cost
        rows.append(np.full(n_net, n_row))
        cols.append(np.arange(n_net))
        vals.append(row_cost)
        lo.append(np.zeros(1))
        hi.append(np.array([float(row_cost.sum())]))
        self.highs = _highs()
        # Presolve on: 1.5-4x faster at the exact-cover budget of 12 tasks + triples (the only
        # slow one there), no worse on 30 tasks (bench/RESULTS_solver.md).
        self.highs.setOptionValue("presolve", "on")
        self.highs.passModel(
            _lp(
                obj,
                np.zeros(n_col),
                np.ones(n_col),
                np.concatenate(rows),
                np.concatenate(cols),
                np.concatenate(vals),
                np.concatenate(lo),
                np.concatenate(hi),
                n_binary=n_net,
                maximise=True,
            )
        )

    def _bounds(self, limit: float) -> tuple[float, float]:
        """The budget row's bounds: spent <= limit, and maximal: spent > limit - cheapest (a
        margin well above the feasibility tolerances set in _highs(); integers when costs have
        a unit)."""
        low = limit - self.cost.min()
        if self.unit:
            return float(math.floor(low * self.unit + 1e-9) + 1), float(
                math.floor(limit * self.unit + 1e-9)
            )
        return low + 1e-6, limit

    def needs_mip(self, budget: float) -> bool:
        """False where solve answers None without a MIP (no cover fits the budget)."""
        limit = float(budget) + self.tolerance
        if self.highs is None or self.need > limit + 1e-9:
            return False
        low, high = self._bounds(limit)
        return low <= high

    def solve(
        self, budget: float, time_limit: float | None = None
    ) -> tuple[tuple[int, ...], float, float] | None:
        """(chosen, value, gap) at ``budget`` (+ tolerance), or None if no maximal cover exists;
        gap > 0 when the time limit stopped HiGHS first (value is then a lower bound on the
        worst), and ``((), nan, inf)`` when it stopped before finding any cover."""
        if not self.needs_mip(budget):
            return None  # no cover fits: answered without a MIP
        h = self.highs
        low, high = self._bounds(float(budget) + self.tolerance)
        h.changeRowBounds(self.budget_row, low, high)
        h.setOptionValue("time_limit", float(time_limit) if time_limit else highspy.kHighsInf)
        h.run()
        status = h.getModelStatus()
        if status == highspy.HighsModelStatus.kInfeasible:
            return None
        gap = 0.0
        if status != highspy.HighsModelStatus.kOptimal:
            if status != highspy.HighsModelStatus.kTimeLimit:
                raise RuntimeError(f"HiGHS stopped with {h.modelStatusToString(status)}")
            if h.getInfo().primal_solution_status != 2:
                return (), float("nan"), float("inf")  # stopped before finding any cover
            gap = float(h.getInfo().mip_gap)
        x = np.asarray(h.getSolution().col_value)[: self.n_net]
        chosen = tuple(np.flatnonzero(x > 0.5).tolist())
        return chosen, total(self.loss, chosen), gap


def worst_cover(
    loss: np.ndarray,
    cost: np.ndarray,
    budget: float,
    tolerance: float = 0.0,
    time_limit: float | None = None,
) -> tuple[tuple[int, ...], float, float] | None:
    """The worst maximal cover at one budget (WorstCover): (chosen, value, gap) or None."""
    return WorstCover(loss, cost, tolerance).solve(budget, time_limit)


def _spread(values: np.ndarray, cols: np.ndarray, n_col: int) -> np.ndarray:
    out = np.zeros(n_col)
    out[cols] = values
    return out


def _add_row(h: highspy._Highs, coef: np.ndarray, upper: float) -> None:
    """Add the row coef . x <= upper."""
    nz = np.flatnonzero(coef)
    h.addRow(-highspy.kHighsInf, float(upper), nz.size, nz.astype(np.int32), coef[nz])


def _lp(
    obj: np.ndarray,
    col_lo: np.ndarray,
    col_hi: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    vals: np.ndarray,
    row_lo: np.ndarray,
    row_hi: np.ndarray,
    n_binary: int,
    maximise: bool = False,
) -> highspy.HighsLp:
    """A HighsLp from coordinate (row, col, value) entries; the first n_binary columns are
    integer (0/1 by their bounds), the rest continuous."""
    order = np.lexsort((rows, cols))
    rows, cols, vals = rows[order], cols[order], vals[order]
    n_col = obj.size
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n_col, row_lo.size
    lp.col_cost_ = obj.astype(float)
    lp.col_lower_, lp.col_upper_ = col_lo.astype(float), col_hi.astype(float)
    lp.row_lower_, lp.row_upper_ = row_lo.astype(float), row_hi.astype(float)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.searchsorted(cols, np.arange(n_col + 1)).astype(np.int32)
    lp.a_matrix_.index_ = rows.astype(np.int32)
    lp.a_matrix_.value_ = vals.astype(float)
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n_binary + [
        highspy.HighsVarType.kContinuous
    ] * (n_col - n_binary)
    if maximise:
        lp.sense_ = highspy.ObjSense.kMaximize
    return lp
