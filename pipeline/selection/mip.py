"""What the budgeted solves (solver.py, benders.py) share about HiGHS: one way to set it up,
rows and models from numpy, and the tie-break's criteria."""

from __future__ import annotations

from collections.abc import Sequence

import highspy
import numpy as np

# TieBreak: objectives within this relative margin are tied (HiGHS' feasibility tolerance, set
# in new_highs, so no finer difference is provable), and the largest combined integer weight.
TIE_TOLERANCE = 1e-9
TIE_WEIGHT_MAX = 1e7


class NoIncumbent(RuntimeError):
    """The time limit stopped HiGHS before it found any choice within the budget."""


def new_highs(verbose: bool = False) -> highspy._Highs:
    """A HiGHS instance set up for exact, single-threaded budgeted solves."""
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


def set_time_limit(h: highspy._Highs, seconds: float | None) -> None:
    h.setOptionValue("time_limit", float(seconds) if seconds else highspy.kHighsInf)


def set_start(h: highspy._Highs, col_value: np.ndarray) -> None:
    """Hand HiGHS a feasible solution as its first incumbent."""
    start = highspy.HighsSolution()
    start.col_value = np.asarray(col_value, dtype=float)
    start.value_valid = True
    h.setSolution(start)


def has_solution(h: highspy._Highs) -> bool:
    return h.getInfo().primal_solution_status == 2  # kSolutionStatusFeasible


def budget_bound(limit: float, unit: int | None) -> float:
    """The budget row's upper bound: in cost units, rounded down, where costs have a unit."""
    return float(np.floor(limit * unit + 1e-9)) if unit else float(limit)


def spread(values: np.ndarray, cols: np.ndarray, n_col: int) -> np.ndarray:
    out = np.zeros(n_col)
    out[cols] = values
    return out


def add_row(h: highspy._Highs, coef: np.ndarray, upper: float) -> None:
    """Add the row coef . x <= upper."""
    nz = np.flatnonzero(coef)
    h.addRow(-highspy.kHighsInf, float(upper), nz.size, nz.astype(np.int32), coef[nz])


def highs_lp(
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


def assignment(loss: np.ndarray, chosen: Sequence[int]) -> np.ndarray:
    """Per task, the chosen network with its least loss (first on ties)."""
    idx = np.asarray(chosen, dtype=int)
    sub = np.where(np.isnan(loss[idx]), np.inf, loss[idx])
    return idx[np.argmin(sub, axis=0)]


def tie_criteria(
    row_cost: np.ndarray,
    integral_cost: bool,
    estimated: np.ndarray,
    size: np.ndarray,
    deployed: int,
) -> list[tuple[np.ndarray, bool]]:
    """TieBreak's criteria over the deploying columns (their networks' cost in the budget row,
    estimated flag and task count), as (coefficients, integral) objectives to minimise in
    order: fewer networks, then lower cost, then measured over estimated, then fewer tasks.

    Only solutions deploying no more than ``deployed`` networks (the optimum found) can win: that
    bounds the range of every integral criterion, so consecutive ones combine into one objective
    with exact integer weights (up to TIE_WEIGHT_MAX)."""
    ones = np.ones(row_cost.size)
    criteria = [(ones, True)]
    if np.unique(row_cost).size > 1:  # equal costs: cost is count x cost
        criteria.append((np.asarray(row_cost, dtype=float), integral_cost))
    if estimated.any():
        criteria.append((estimated.astype(float), True))
    criteria.append((size.astype(float), True))
    groups: list[tuple[np.ndarray, bool]] = []
    for coef, integral in criteria:
        top = deployed * float(coef.max(initial=0.0))
        if groups and groups[-1][1] and integral:
            weights = groups[-1][0] * (top + 1) + coef
            if deployed * weights.max(initial=0.0) <= TIE_WEIGHT_MAX:
                groups[-1] = (weights, True)
                continue
        groups.append((coef, integral))
    return groups


def tie_slack(value: float, integral: bool) -> float:
    """How far past a criterion's optimum the next passes may go: nothing, for integers."""
    return 0.5 if integral else TIE_TOLERANCE * max(1.0, abs(value))
