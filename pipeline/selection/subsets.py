"""The budgeted grouping MIP with served subsets (SubsetModel): small networks enter as one column
per subset of their tasks they could serve, large ones as facility-location blocks (solver.py's
module doc has the formulation)."""

from __future__ import annotations

import itertools

import highspy
import numpy as np

from . import mip
from .mip import (
    TIE_TOLERANCE,
    NoIncumbent,
    add_row,
    budget_bound,
    has_solution,
    highs_lp,
    new_highs,
    set_start,
    set_time_limit,
    spread,
    tie_criteria,
    tie_slack,
)

# Networks with at most this many tasks enter the MIP as one column per subset of their tasks
# (2^k - 1 of them); larger ones as facility-location blocks (_Model). Measured on the
# planted instances: 4 keeps the 12-task demo's all-in-one network out (4,095 subsets) and every
# pair and triple in.
SUBSET_MAX_TASKS = 4


class SubsetModel:
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
        self.highs = new_highs(verbose)
        self.verbose, self.presolve = verbose, presolve
        if presolve:
            self.highs.setOptionValue("presolve", "on")
        # Per column, the network it deploys (-1: a y column), for the tie-break criteria.
        self.deploys = np.concatenate([owner, self.big, np.full(n_y, -1)]).astype(int)
        self.row_cost, self.est, self.size = row_cost, est, size
        self.lp = highs_lp(
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
        h.changeRowBounds(self.budget_row, 0.0, budget_bound(limit, self.unit))
        set_time_limit(h, time_limit)
        if start is not None:
            set_start(h, self._full(start))
        h.run()
        status = h.getModelStatus()
        if status == highspy.HighsModelStatus.kInfeasible:
            return None
        info = h.getInfo()
        solved = has_solution(h)
        if status == highspy.HighsModelStatus.kTimeLimit and not solved:
            raise NoIncumbent(f"no choice found within {time_limit:.3g} s (the time limit)")
        if status != highspy.HighsModelStatus.kOptimal and not (
            status in (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kInterrupt)
            and solved
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
        start: np.ndarray | None = None,
    ) -> np.ndarray:
        """x of the solution TieBreak prefers among those whose objective is at most
        ``objective``, the optimum run just proved; its solution (in HiGHS, so ``start`` is
        not needed) is the first incumbent."""
        col = np.asarray(self.highs.getSolution().col_value)
        h = new_highs(self.verbose)
        if self.presolve:
            h.setOptionValue("presolve", "on")
        h.passModel(self.lp)
        h.changeRowBounds(self.budget_row, 0.0, budget_bound(limit, self.unit))
        set_time_limit(h, time_limit)
        if off is not None and off.any():
            fixed = self._columns_of(off)
            h.changeColsBounds(fixed.size, fixed, np.zeros(fixed.size), np.zeros(fixed.size))
        n_col = col.size
        primary = np.asarray(self.lp.col_cost_)
        # Objectives equal to HiGHS' feasibility tolerance are ties: what the MIP can tell apart.
        add_row(h, primary, objective + TIE_TOLERANCE * max(1.0, abs(objective)))
        cols = np.flatnonzero(self.deploys >= 0)
        nets = self.deploys[cols]
        deployed = int(round(col[cols].sum()))
        add_row(h, spread(np.ones(cols.size), cols, n_col), float(deployed))
        groups = tie_criteria(
            self.row_cost[nets], bool(self.unit), self.est[nets], self.size[nets], deployed
        )
        for g, (coef, integral) in enumerate(groups):
            full = spread(coef, cols, n_col)
            h.changeColsCost(n_col, np.arange(n_col, dtype=np.int32), full)
            set_start(h, col)
            h.run()
            status = h.getModelStatus()
            if has_solution(h):
                col = np.asarray(h.getSolution().col_value)
            if status != highspy.HighsModelStatus.kOptimal:
                break  # the time limit: keep the best tie found so far (still optimal)
            if g + 1 < len(groups):
                value = float(full @ col)
                add_row(h, full, value + tie_slack(value, integral))
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
        serving = mip.assignment(self.loss, deployed)
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
