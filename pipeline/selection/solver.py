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
The model is built once per loss table; each budget only moves the knapsack row's bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import highspy
import numpy as np


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


def _highs() -> highspy.Highs:
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_abs_gap", 0.0)
    # Budgets are compared exactly (the slack is cost_tolerance, explicit), not within HiGHS'
    # default 1e-6 MIP feasibility tolerance.
    h.setOptionValue("mip_feasibility_tolerance", 1e-9)
    h.setOptionValue("primal_feasibility_tolerance", 1e-9)
    # One thread: the models are small, and a thread pool per call costs more than it saves
    # (and the workflow runs several jobs side by side on few cores).
    h.setOptionValue("threads", 1)
    # Measured on the 12-task sweep (bench/bench_solver.py): these models are small and their
    # LP bound is tight (a handful of nodes), so presolve and the RINS/RENS sub-MIP heuristics
    # cost more than they save (about 2x overall).
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


class BudgetSolver:
    """One loss table, many budgets: build the MIP once, re-solve with each budget."""

    def __init__(self, loss: np.ndarray, cost: np.ndarray, tolerance: float = 0.0) -> None:
        loss = np.asarray(loss, dtype=float)
        cost = np.asarray(cost, dtype=float)
        _check(loss, cost)
        self.loss, self.cost, self.tolerance = loss, cost, float(tolerance)
        n_net, n_task = loss.shape
        # y variables, one per defined (network, task) entry; columns 0..n_net-1 are the x_n.
        self.y_net, self.y_task = np.nonzero(~np.isnan(loss))
        n_y = self.y_net.size
        y_cols = n_net + np.arange(n_y)
        # Rows: [0, n_task) assignment equalities, [n_task, n_task + n_y) y - x <= 0, then budget.
        link_rows = n_task + np.arange(n_y)
        self.budget_row = n_task + n_y
        rows = np.concatenate([self.y_task, link_rows, link_rows, np.full(n_net, self.budget_row)])
        cols = np.concatenate([y_cols, y_cols, self.y_net, np.arange(n_net)])
        vals = np.concatenate([np.ones(n_y), np.ones(n_y), -np.ones(n_y), cost])
        n_col = n_net + n_y
        self.highs = _highs()
        self.highs.passModel(
            _lp(
                obj=np.concatenate([np.zeros(n_net), loss[self.y_net, self.y_task]]),
                col_lo=np.zeros(n_col),
                col_hi=np.ones(n_col),
                rows=rows,
                cols=cols,
                vals=vals,
                row_lo=np.concatenate([np.ones(n_task), np.full(n_y, -highspy.kHighsInf), [0.0]]),
                row_hi=np.concatenate([np.ones(n_task), np.zeros(n_y), [cost.sum()]]),
                n_binary=n_net,
            )
        )

    def solve(self, budget: float) -> Solution:
        """The optimal choice within ``budget`` (+ tolerance); InfeasibleBudget if none exists."""
        h = self.highs
        h.changeRowBounds(self.budget_row, 0.0, float(budget) + self.tolerance)
        h.run()
        status = h.getModelStatus()
        if status == highspy.HighsModelStatus.kInfeasible:
            need = cheapest_cover(self.loss, self.cost)
            raise InfeasibleBudget(
                f"budget {budget:g} (+ tolerance {self.tolerance:g}) is below the cheapest set of "
                f"networks covering every task, which costs {need:.6g}"
            )
        if status != highspy.HighsModelStatus.kOptimal:
            raise RuntimeError(f"HiGHS stopped with {h.modelStatusToString(status)}")
        values = np.asarray(h.getSolution().col_value)
        n_net, n_task = self.loss.shape
        y = values[n_net:]
        # The largest y per task is its serving network (1.0 up to HiGHS' feasibility tolerance).
        best = np.full(n_task, -1.0)
        assignment = np.full(n_task, -1)
        for net, task, value in zip(self.y_net, self.y_task, y):
            if value > best[task]:
                best[task], assignment[task] = value, net
        # Deploy only networks that serve a task: an unused one can only cost budget, and
        # scoring on test takes the min over every deployed network, so it must not linger.
        chosen = tuple(sorted(set(assignment.tolist())))
        objective = float(self.loss[assignment, np.arange(n_task)].sum())
        return Solution(
            float(budget),
            chosen,
            tuple(assignment.tolist()),
            objective,
            float(self.cost[list(chosen)].sum()),
        )


def solve(loss: np.ndarray, cost: np.ndarray, budget: float, tolerance: float = 0.0) -> Solution:
    """The optimal network choice for one budget (see the module docstring)."""
    return BudgetSolver(loss, cost, tolerance).solve(budget)


def solve_budgets(
    loss: np.ndarray, cost: np.ndarray, budgets: Iterable[float], tolerance: float = 0.0
) -> list[Solution | None]:
    """One solution per budget; None where the budget is below the cheapest cover."""
    solver = BudgetSolver(loss, cost, tolerance)
    out: list[Solution | None] = []
    for budget in budgets:
        try:
            out.append(solver.solve(budget))
        except InfeasibleBudget:
            out.append(None)
    return out


def cheapest_cover(loss: np.ndarray, cost: np.ndarray) -> float:
    """The least total cost of networks covering every task (a weighted set cover)."""
    defined = ~np.isnan(np.asarray(loss, dtype=float))
    cost = np.asarray(cost, dtype=float)
    n_net, n_task = defined.shape
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
        n_binary=n_net,
    )
    h = _highs()
    h.passModel(lp)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        raise InfeasibleBudget("no set of networks covers every task")
    return float(h.getInfo().objective_function_value)


def worst_cover(
    loss: np.ndarray, cost: np.ndarray, budget: float, tolerance: float = 0.0
) -> tuple[tuple[int, ...], float] | None:
    """The worst *maximal* cover: among covering sets whose unspent budget is below the cheapest
    network's cost (no network could still be added: the support of Standley's random sampler),
    the one maximising sum_t min_{chosen n containing t} L[n, t]. Returns (chosen, value), or
    None if no such set exists.

    Maximising a sum of minima needs the minimum pinned down, which big-M rows do only weakly
    (minutes on 300 networks). Instead, per task t, sort its networks by loss l_1 <= ... <= l_k
    and let v_i = 1 when none of the i-1 best is deployed (v_1 = 1). Then the task's loss is
    l_1 + sum_{i>=2} (l_i - l_{i-1}) v_i, with
        v_i - v_{i+1} <= x_{n_i}   (the first deployed network is where v drops)
        x_{n_i} + v_{i+1} <= 1     (after a deployed network, v is 0)
        v_{i+1} <= v_i             (v only drops), v_{k+1} = 0 (some network serves t).
    """
    loss = np.asarray(loss, dtype=float)
    cost = np.asarray(cost, dtype=float)
    n_net, n_task = loss.shape
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    row_lo: list[float] = []
    row_hi: list[float] = []
    if np.isnan(loss).all(axis=0).any():
        return None
    obj = list(np.zeros(n_net))
    n_col = n_net

    def row(entries: list[tuple[int, float]], lo: float, hi: float) -> None:
        r = len(row_lo)
        for c, v in entries:
            rows.append(r)
            cols.append(c)
            vals.append(v)
        row_lo.append(lo)
        row_hi.append(hi)

    for t in range(n_task):
        nets = np.flatnonzero(~np.isnan(loss[:, t]))
        nets = nets[np.argsort(loss[nets, t], kind="stable")]
        k = nets.size
        # v[i] is the column of v_{i+1} in 0-based position i (v[0] = v_1 = 1 is a constant).
        v = [None] + list(range(n_col, n_col + k - 1))
        n_col += k - 1
        obj += [loss[nets[i], t] - loss[nets[i - 1], t] for i in range(1, k)]
        for i in range(k):
            here = v[i]
            after = v[i + 1] if i + 1 < k else None
            entries = [(int(nets[i]), -1.0)]
            lo_const = 1.0 if here is None else 0.0  # v_1 = 1 moves to the bound
            if here is not None:
                entries.append((here, 1.0))
            if after is not None:
                entries.append((after, -1.0))
            row(entries, -highspy.kHighsInf, -lo_const)
            if after is not None:
                row([(int(nets[i]), 1.0), (after, 1.0)], -highspy.kHighsInf, 1.0)
                if here is not None:
                    row([(after, 1.0), (here, -1.0)], -highspy.kHighsInf, 0.0)
    # Budget, and maximality: the unspent budget is below the cheapest network's cost. The
    # strict inequality gets a margin well above the feasibility tolerances set in _highs().
    row(
        [(n, float(cost[n])) for n in range(n_net)],
        budget + tolerance - cost.min() + 1e-6,
        budget + tolerance,
    )
    h = _highs()
    h.passModel(
        _lp(
            np.array(obj),
            np.zeros(n_col),
            np.ones(n_col),
            np.array(rows),
            np.array(cols),
            np.array(vals),
            np.array(row_lo),
            np.array(row_hi),
            n_binary=n_net,
            maximise=True,
        )
    )
    h.run()
    if h.getModelStatus() == highspy.HighsModelStatus.kInfeasible:
        return None
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"HiGHS stopped with {h.modelStatusToString(h.getModelStatus())}")
    x = np.asarray(h.getSolution().col_value)[:n_net]
    chosen = tuple(np.flatnonzero(x > 0.5).tolist())
    return chosen, score(loss, chosen)


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


def score(loss: np.ndarray, chosen: Sequence[int]) -> float:
    """sum over tasks of the least loss among the chosen networks (Standley's test scoring)."""
    return float(per_task(loss, chosen).sum())


def per_task(loss: np.ndarray, chosen: Sequence[int]) -> np.ndarray:
    """Per task, the least loss among the chosen networks that have it (NaN if none does)."""
    sub = np.asarray(loss, dtype=float)[list(chosen)]
    with np.errstate(all="ignore"):
        out = np.nanmin(np.where(np.isnan(sub), np.inf, sub), axis=0)
    return np.where(np.isinf(out), np.nan, out)
