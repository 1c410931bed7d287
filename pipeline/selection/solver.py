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

* served subsets (subsets.SubsetModel): networks with few tasks enter as one column per subset
  of their tasks they could serve, so the LP has one row per task, not one per (task, network);
* Benders cuts (benders.CutModel), where large networks would need many facility-location
  rows: the assignment is projected out, the LP closes with a few dozen cuts, and reduced-cost
  fixing leaves the MIP the networks that can matter (``formulation``: auto picks);
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

from . import mip
from .benders import CutModel
from .mip import (
    NoIncumbent,
    highs_lp,
    new_highs,
)
from .scoring import total
from .subsets import SUBSET_MAX_TASKS, SubsetModel


class InfeasibleBudget(ValueError):
    """No set of networks within the budget covers every task."""


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


# Pairs of networks compared at once by dominated (memory: chunk x tasks x a few arrays).
DOMINANCE_CHUNK = 1 << 15


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
    all_a, all_b = np.array(pairs_a), np.array(pairs_b)
    # In chunks: the pairs of 2,800 networks of 9-17 tasks and 2,900 triples (1.2 M) as whole
    # (pairs x tasks) arrays took 7.7 s, mostly the kernel handing out fresh memory; 0.9 s so.
    for at in range(0, all_a.size, DOMINANCE_CHUNK):
        a, b = all_a[at : at + DOMINANCE_CHUNK], all_b[at : at + DOMINANCE_CHUNK]
        on_a = defined[a]
        la = np.where(on_a, loss[a], 0.0)
        lb = np.where(on_a, loss[b], 0.0)
        weak = (cost[b] <= cost[a]) & np.all(lb <= la, axis=1)
        strict = np.all(~on_a | (lb < la), axis=1)
        equal = (cost[b] == cost[a]) & np.all(lb == la, axis=1)
        # The tie-break's order past cost: measured first, then fewer tasks, then the lower
        # index (a strict total order, so of equals exactly one survives).
        preferred = (est[b] < est[a]) | (
            (est[b] == est[a])
            & ((n_tasks[b] < n_tasks[a]) | ((n_tasks[b] == n_tasks[a]) & (b < a)))
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
    lp = highs_lp(
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
    h = new_highs(verbose)
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


# The least seconds a budget gets from solve_all's shared total once it is spent: HiGHS then
# hands back the incumbent it was given (an earlier budget's answer, the cover, OS's answer).
MIN_SHARE_S = 0.001

# The formulations BudgetSolver can build: served subsets with facility-location blocks
# (SubsetModel) or Benders cuts (benders.CutModel).
FORMULATIONS = ("subsets", "benders")
# "auto" takes Benders where the facility-location blocks would hold more (task, network)
# pairs than this: 27 tasks with 2,800 networks of 9-17 tasks (36,508 pairs) went from a 15 s
# root LP per budget to milliseconds (bench/RESULTS_solver.md); tables of singles, pairs and
# triples (no blocks) stay with served subsets, where each budget takes milliseconds.
BENDERS_MIN_PAIRS = 5000


def _formulation(loss: np.ndarray, subset_max: int) -> str:
    size = (~np.isnan(loss)).sum(axis=1)
    pairs = int(size[size > subset_max].sum())
    return "benders" if pairs > BENDERS_MIN_PAIRS else "subsets"


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
        formulation: str = "auto",
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
        if formulation == "auto":
            formulation = _formulation(sub_loss, subset_max if subsets else 0)
        if formulation not in FORMULATIONS:
            raise ValueError(f"formulation must be one of {FORMULATIONS} or auto: {formulation!r}")
        self.formulation = formulation
        self.model: SubsetModel | CutModel
        if formulation == "benders":
            self.model = CutModel(sub_loss, sub_cost, unit, verbose, estimated=est[self.kept])
        else:
            self.model = SubsetModel(
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
            x = self.model.tie_break(limit, objective, left, off, start=x)
        chosen = self.kept[np.flatnonzero(x > 0.5)]
        assignment = mip.assignment(self.loss, chosen)
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
        self.highs = new_highs()
        # Presolve on: 1.5-4x faster at the exact-cover budget of 12 tasks + triples (the only
        # slow one there), no worse on 30 tasks (bench/RESULTS_solver.md).
        self.highs.setOptionValue("presolve", "on")
        self.highs.passModel(
            highs_lp(
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
        margin well above the feasibility tolerances set in new_highs(); integers when costs have
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
