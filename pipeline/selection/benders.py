"""The budgeted grouping solve by Benders decomposition, for tables of large networks.

subsets.SubsetModel writes each large network as a facility-location block: one y column and one
link row per (task, network) pair. On 27 tasks with 2,800 networks of 9-17 tasks that is 36,508
rows, and HiGHS needed about 15 s for each root LP (bench/RESULTS_solver.md). Here the
assignment is projected out, as Fischetti, Ljubic and Sinnl do for facility location
("Redesigning Benders Decomposition for Large-Scale Facility Location", Management Science 63(7),
2017): the master keeps x_n and one theta_t per task,

    minimise sum_t theta_t
    sum_n c_n x_n <= B,   sum_{n containing t} x_n >= 1   (every task served)

and per task t the cost of serving it is cut in lazily. Sort the networks holding t by loss,
l_1 <= l_2 <= ...; for any level k,

    theta_t >= l_k - sum_{j < k} (l_k - l_j) x_{n_j}

holds at every 0/1 x (the first deployed network j0 gives l_j0 either way). At a fractional x
the level k* where the cumulative x first reaches 1 gives the assignment LP's value, so the cut
loop closes the LP at the facility-location bound with a few dozen dense rows instead of one row
per pair (27 tasks: ~100 rows, each LP milliseconds).

HiGHS has no lazy-constraint callback, so the integer part is a loop: solve the master MIP, add
the cuts its answer violates, solve again, until the master's objective equals the true one of
its answer (the master is a relaxation: that answer is optimal). Before it, reduced-cost fixing
with the LP's duals keeps only the networks that can be in a choice no worse than the best
known one (a restricted MIP over the networks of least reduced cost finds a good one first):
27 tasks keep 16-100 of 2,859 networks. Few enough, they are solved by SubsetModel, whose
facility-location blocks are strong at every node; more, by the loop above over them alone.
"""

from __future__ import annotations

import time

import highspy
import numpy as np

from .mip import (
    TIE_TOLERANCE,
    NoIncumbent,
    add_row,
    budget_bound,
    has_solution,
    new_highs,
    set_start,
    set_time_limit,
    spread,
    tie_criteria,
    tie_slack,
)
from .subsets import SUBSET_MAX_TASKS, SubsetModel

# The restricted MIP that finds a good choice before the reduced-cost fixing: this many
# networks of least reduced cost (27 tasks: 50 gave the least time of 50, 100 and 200).
RESTRICTED_NETWORKS = 50
# After the fixing, SubsetModel solves the networks left when their facility-location blocks
# hold at most this many (task, network) pairs; the Benders loop above more. On 27 tasks both
# took 4-7 s at ~3,000 pairs; at 7,500 SubsetModel took 39 s, the loop 14 s; at 1,200, 0.6 s
# against 1.4 s (bench/RESULTS_solver.md).
COMPACT_MAX_PAIRS = 3000
# Cuts violated by less than this (relative) are not added: within HiGHS' tolerances.
CUT_TOLERANCE = 1e-9

_OPTIMAL = highspy.HighsModelStatus.kOptimal
_INFEASIBLE = highspy.HighsModelStatus.kInfeasible


def _slack(value: float) -> float:
    """What reduced-cost fixing leaves on top of a gap: ties (TIE_TOLERANCE) and the duals'
    rounding."""
    return (TIE_TOLERANCE + 1e-7) * max(1.0, abs(value))


class CutModel:
    """One loss table's cuts and LP (module doc); ``run`` and ``tie_break`` have SubsetModel's
    contract, so BudgetSolver takes either."""

    def __init__(
        self,
        loss: np.ndarray,
        cost: np.ndarray,
        unit: int | None,
        verbose: bool,
        estimated: np.ndarray | None = None,
    ) -> None:
        n_net, n_task = loss.shape
        self.loss, self.cost, self.unit, self.verbose = loss, cost, unit, verbose
        self.n_net, self.n_task = n_net, n_task
        defined = ~np.isnan(loss)
        self.size = defined.sum(axis=1)
        self.est = np.zeros(n_net, dtype=bool) if estimated is None else np.asarray(estimated, bool)
        self.row_cost = np.asarray(np.round(cost * unit) if unit else cost, dtype=float)
        # Per task, its networks by loss (ties: the lower index first, a fixed order).
        self.order, self.levels = [], []
        for t in range(n_task):
            nets = np.flatnonzero(defined[:, t])
            nets = nets[np.argsort(loss[nets, t], kind="stable")]
            self.order.append(nets)
            self.levels.append(loss[nets, t])
        self.lowest = np.array([levels[0] for levels in self.levels])
        # Every cut found, as (task, level): valid for every budget and every master.
        self.cuts: list[tuple[int, int]] = []
        self._known: set[tuple[int, int]] = set()
        # The LP over every network, kept across budgets (its basis warm-starts the next).
        self.lp = _Master(self, np.arange(n_net), integral=False)
        # The last LP's bound and reduced costs, for the fixing in tie_break, and the last
        # SubsetModel run solved (with its networks), whose tie_break is the one to use.
        self._lp_bound, self._reduced = -np.inf, np.zeros(n_net)
        self._compact: tuple[SubsetModel, np.ndarray] | None = None

    def true_objective(self, x: np.ndarray) -> float:
        """sum_t min over deployed networks holding t of L[n, t] (inf where t is unserved)."""
        if not (x > 0.5).any():
            return float("inf")
        best = self.task_losses(x)
        return float("inf") if np.isnan(best).any() else float(best.sum())

    def task_losses(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.fmin.reduce(np.where((x > 0.5)[:, None], self.loss, np.nan), axis=0)

    def add_cuts(self, x: np.ndarray, theta: np.ndarray) -> int:
        """Record every task's cut at x (all networks) that theta violates; how many."""
        added = 0
        for t, (nets, levels) in enumerate(zip(self.order, self.levels)):
            reached = np.cumsum(x[nets])
            k = min(int(np.searchsorted(reached, 1.0 - 1e-9)), nets.size - 1)
            value = levels[k] - float((levels[k] - levels[:k]) @ x[nets[:k]])
            if value <= theta[t] + CUT_TOLERANCE * max(1.0, abs(value)):
                continue
            if (t, k) in self._known:
                continue  # violated only within tolerances: adding it again changes nothing
            self._known.add((t, k))
            self.cuts.append((t, k))
            added += 1
        return added

    def _close_lp(self, limit: float, off: np.ndarray, deadline: float):
        """The cut loop on the LP: (bound, reduced costs of x); None if infeasible; bound -inf
        where the time ran out."""
        lp = self.lp
        lp.set_budget(limit)
        lp.fix(off)
        try:
            while True:
                status = lp.run(deadline)
                if status == _INFEASIBLE:
                    return None
                if status != _OPTIMAL:
                    return -np.inf, np.zeros(self.n_net)
                x, theta = lp.solution()
                if not self.add_cuts(x, theta):
                    return lp.objective(), lp.reduced_costs()
        finally:
            lp.fix(off, upper=1.0)

    def _mip(
        self,
        master: _Master,
        start: np.ndarray | None,
        deadline: float,
        accept: float | None = None,
    ) -> tuple[np.ndarray | None, float, float, bool]:
        """The Benders loop on a MIP master: solve, record the cuts its answer violates, solve
        again. Returns (x, true objective, the master's bound, proven). ``accept``: stop at the
        first answer whose true objective is at most this (a tie-break pass); otherwise when
        the master's objective is the true one. x is None where the time came before any
        answer (or, proven, where there is none); else the best true answer seen."""
        best_x = start
        best = self.true_objective(start) if start is not None else np.inf
        bound = -np.inf
        while True:
            if time.perf_counter() >= deadline:
                return best_x, best, bound, False
            if best_x is not None:
                master.set_start(best_x)
            status = master.run(deadline)
            if status == _INFEASIBLE:
                return None, np.inf, np.inf, True
            if not master.has_solution():
                return best_x, best, bound, False
            x, theta = master.solution()
            value = self.true_objective(x)
            if best_x is None or value < best - TIE_TOLERANCE * max(1.0, abs(best)):
                best_x, best = x, value
            proven = status == _OPTIMAL
            bound = max(bound, master.objective() if proven else master.dual_bound())
            if accept is not None:
                if value <= accept:
                    return x, value, bound, proven
            elif proven and value <= master.objective() + TIE_TOLERANCE * max(1.0, abs(value)):
                return x, value, value, True
            if not proven:
                return best_x, best, bound, False
            if not self.add_cuts(x, theta):
                return x, value, bound, True  # the master cannot tell them apart

    # -- SubsetModel's contract ---------------------------------------------------------------

    def run(
        self,
        limit: float,
        start: np.ndarray | None,
        time_limit: float | None,
        off: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float, float, float] | None:
        """Solve with total cost <= limit; (x, objective, bound, gap) or None if infeasible."""
        deadline = time.perf_counter() + (time_limit if time_limit else np.inf)
        off = np.zeros(self.n_net, dtype=bool) if off is None else np.asarray(off, dtype=bool)
        closed = self._close_lp(limit, off, deadline)
        if closed is None:
            return None
        lp_bound, reduced = closed
        self._lp_bound, self._reduced = lp_bound, reduced
        free = ~off
        x, value = start, self.true_objective(start) if start is not None else np.inf
        self._compact = None
        if np.isfinite(lp_bound) and free.sum() > RESTRICTED_NETWORKS:
            # A good choice first, over the networks of least reduced cost ...
            ranked = np.argsort(np.where(free, reduced, np.inf), kind="stable")
            restricted = np.zeros(self.n_net, dtype=bool)
            restricted[ranked[:RESTRICTED_NETWORKS]] = True
            if x is not None:
                restricted |= x > 0.5
            found = self._subset_run(np.flatnonzero(restricted), limit, x, deadline)
            if found is not None and found[1] < value:
                x, value = found[0], found[1]
        if np.isfinite(lp_bound) and np.isfinite(value):
            # ... then every network that can be in a choice no worse than it.
            free &= reduced <= value - lp_bound + _slack(value)
        nets = np.flatnonzero(free)
        if int(self.size[nets][self.size[nets] > SUBSET_MAX_TASKS].sum()) <= COMPACT_MAX_PAIRS:
            found = self._subset_run(nets, limit, x, deadline, keep=True)
            if found is None:
                return None
            x, value, bound, gap = found
            if gap <= 0.0:
                return x, value, value, 0.0
            return x, value, max(bound, lp_bound), gap
        x, value, bound, proven = self._mip(_Master(self, nets, limit=limit), x, deadline)
        if x is None:
            if proven:
                return None
            raise NoIncumbent(f"no choice found within {time_limit:.3g} s (the time limit)")
        if proven:
            return x, value, value, 0.0
        bound = max(bound, lp_bound)
        gap = (value - bound) / abs(value) if np.isfinite(bound) and value else 1.0
        return x, value, bound, max(float(gap), 0.0)

    def _subset_run(
        self,
        nets: np.ndarray,
        limit: float,
        start: np.ndarray | None,
        deadline: float,
        keep: bool = False,
    ) -> tuple[np.ndarray, float, float, float] | None:
        """SubsetModel over ``nets`` alone: (x over all networks, objective, bound, gap), None
        where no choice of them fits. ``keep``: its tie_break answers the next tie_break."""
        model = SubsetModel(
            self.loss[nets], self.cost[nets], self.unit, self.verbose, estimated=self.est[nets]
        )
        left = max(deadline - time.perf_counter(), 1e-3) if np.isfinite(deadline) else None
        try:
            result = model.run(limit, None if start is None else start[nets], left)
        except NoIncumbent:
            if keep:
                raise
            return None
        if result is None:
            return None
        if keep:
            self._compact = (model, nets)
        x = np.zeros(self.n_net)
        x[nets] = result[0]
        return (x, *result[1:])

    def tie_break(
        self,
        limit: float,
        objective: float,
        time_limit: float | None,
        off: np.ndarray | None = None,
        start: np.ndarray | None = None,
    ) -> np.ndarray:
        """x of the choice TieBreak prefers among those whose true objective is at most
        ``objective`` (run's proven optimum, whose x is ``start``)."""
        if self._compact is not None:
            # run solved the networks of every tied choice with SubsetModel: its tie-break.
            model, nets = self._compact
            x = np.zeros(self.n_net)
            x[nets] = model.tie_break(limit, objective, time_limit)
            return x
        deadline = time.perf_counter() + (time_limit if time_limit else np.inf)
        accept = objective + TIE_TOLERANCE * max(1.0, abs(objective))
        free = np.ones(self.n_net, dtype=bool) if off is None else ~np.asarray(off, dtype=bool)
        if np.isfinite(self._lp_bound):
            free &= self._reduced <= objective - self._lp_bound + _slack(objective)
        x = np.asarray(start, dtype=float)
        free |= x > 0.5
        master = _Master(self, np.flatnonzero(free), limit=limit)
        master.add_row_over_theta(accept)
        deployed = int(round(x.sum()))
        nets = master.nets
        master.add_row_over_x(np.ones(nets.size), float(deployed))
        groups = tie_criteria(
            self.row_cost[nets], bool(self.unit), self.est[nets], self.size[nets], deployed
        )
        for g, (coef, integral) in enumerate(groups):
            master.set_x_cost(coef)
            found, _, _, proven = self._mip(master, x, deadline, accept=accept)
            if found is not None and self.true_objective(found) <= accept:
                x = found
            if not proven:
                break  # the time limit: keep the best tie found so far (still optimal)
            if g + 1 < len(groups):
                value = float(coef @ x[nets])
                master.add_row_over_x(coef, value + tie_slack(value, integral))
        return x


class _Master:
    """The master over some networks (the rest are 0) and every task's theta, with all of the
    model's cuts projected onto them; ``run`` first adds the cuts found since."""

    def __init__(
        self, model: CutModel, nets: np.ndarray, limit: float | None = None, integral: bool = True
    ) -> None:
        self.model, self.nets, self.integral = model, np.asarray(nets, dtype=int), integral
        self.local = np.full(model.n_net, -1)
        self.local[self.nets] = np.arange(self.nets.size)
        n_x, n_task = self.nets.size, model.n_task
        self.n_col = n_x + n_task
        inf = highspy.kHighsInf
        h = self.highs = new_highs(model.verbose)
        # Presolve stays off (new_highs): where presolve alone solved a master HiGHS 1.16 handed
        # back the incumbent we gave it as the solution, beside the optimum's objective.
        h.addCols(
            self.n_col,
            np.r_[np.zeros(n_x), np.ones(n_task)],
            np.r_[np.zeros(n_x), model.lowest],
            np.r_[np.ones(n_x), np.full(n_task, inf)],
            0,
            np.zeros(0, dtype=np.int32),
            np.zeros(0, dtype=np.int32),
            np.zeros(0),
        )
        if integral and n_x:
            h.changeColsIntegrality(
                n_x, np.arange(n_x, dtype=np.int32), np.full(n_x, highspy.HighsVarType.kInteger)
            )
        # Row 0: the budget.
        h.addRow(0.0, inf, n_x, np.arange(n_x, dtype=np.int32), model.row_cost[self.nets])
        if limit is not None:
            self.set_budget(limit)
        for nets in model.order:
            local = self.local[nets]
            local = local[local >= 0].astype(np.int32)
            h.addRow(1.0, inf, local.size, local, np.ones(local.size))
        self.n_cuts = 0

    def set_budget(self, limit: float) -> None:
        self.highs.changeRowBounds(0, 0.0, budget_bound(limit, self.model.unit))

    def fix(self, mask: np.ndarray, upper: float = 0.0) -> None:
        """Bound x to [0, upper] for the networks in ``mask`` (over all networks)."""
        local = self.local[np.flatnonzero(mask)]
        local = local[local >= 0].astype(np.int32)
        if local.size:
            self.highs.changeColsBounds(
                local.size, local, np.zeros(local.size), np.full(local.size, upper)
            )

    def _sync(self) -> None:
        model, h = self.model, self.highs
        n_x = self.nets.size
        for t, k in model.cuts[self.n_cuts :]:
            nets, levels = model.order[t][:k], model.levels[t]
            local = self.local[nets]
            keep = local >= 0
            index = np.r_[local[keep], n_x + t].astype(np.int32)
            values = np.r_[(levels[k] - levels[:k])[keep], 1.0]
            h.addRow(float(levels[k]), highspy.kHighsInf, index.size, index, values)
        self.n_cuts = len(model.cuts)

    def run(self, deadline: float) -> highspy.HighsModelStatus:
        self._sync()
        h = self.highs
        left = max(deadline - time.perf_counter(), 1e-3)
        # HiGHS' simplex compares time_limit with the instance's run time summed over all its
        # runs, its MIP with this run's alone (measured, highspy 1.16).
        set_time_limit(h, left if self.integral else h.getRunTime() + left)
        h.run()
        return h.getModelStatus()

    def has_solution(self) -> bool:
        return has_solution(self.highs)

    def solution(self) -> tuple[np.ndarray, np.ndarray]:
        """(x over all networks, theta): x rounded to 0/1 when the master is a MIP."""
        col = np.asarray(self.highs.getSolution().col_value)
        x = np.zeros(self.model.n_net)
        x[self.nets] = col[: self.nets.size]
        if self.integral:
            x = np.round(x)
        return x, col[self.nets.size :]

    def objective(self) -> float:
        return float(self.highs.getInfo().objective_function_value)

    def dual_bound(self) -> float:
        return float(self.highs.getInfo().mip_dual_bound)

    def reduced_costs(self) -> np.ndarray:
        out = np.zeros(self.model.n_net)
        out[self.nets] = np.asarray(self.highs.getSolution().col_dual)[: self.nets.size]
        return out

    def set_start(self, x: np.ndarray) -> None:
        """A 0/1 choice (over all networks) as the first incumbent, theta at its true losses."""
        set_start(self.highs, np.r_[x[self.nets], self.model.task_losses(x)])

    def add_row_over_theta(self, upper: float) -> None:
        n_x = self.nets.size
        add_row(
            self.highs,
            spread(np.ones(self.model.n_task), n_x + np.arange(self.model.n_task), self.n_col),
            upper,
        )

    def add_row_over_x(self, coef: np.ndarray, upper: float) -> None:
        add_row(self.highs, spread(coef, np.arange(self.nets.size), self.n_col), upper)

    def set_x_cost(self, coef: np.ndarray) -> None:
        cost = np.r_[coef, np.zeros(self.model.n_task)]
        self.highs.changeColsCost(self.n_col, np.arange(self.n_col, dtype=np.int32), cost)
