"""The trained random control of an estimating strategy (``selection.controls``): the same
exact solve over the strategy's pool with its decided groups replaced by random task sets of
the same sizes (pipeline/strategies/controls.py draws them; they are trained like any network).

The comparison, per budget: the strategy's total test loss (OS), the control's, the all-in-one
network's, and the share of the gain over all-in-one that the estimate earns,
(control - strategy) / (all-in-one - strategy): 1 when the random groups gain nothing, 0 when
they gain as much as the estimate's, negative when they gain more.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .candidates import Candidates
from .scoring import Scored
from .solving import Outcome, Settings, _solve

CONTROL = "control"


@dataclass(frozen=True)
class Pools:
    """One training method's networks by role (network names, as in metrics' ``network``)."""

    strategy: str
    # Decided groups trained only because the estimate picked them (not in the first stage).
    decided: frozenset[str]
    # Controls that are no decided group or first-stage network: the control's alone.
    controls: frozenset[str]
    # Every control, and how many there are (a repeat counts once in ``controls``).
    all_controls: tuple[str, ...]


def read_pools(groups_files: Sequence[str | os.PathLike]) -> dict[tuple[str, str], Pools]:
    """(architecture, weighting) -> its Pools, from results/groups/<method>.json files; methods
    whose file has no controls (selection.controls off) are left out. A strategy that decided
    no group beyond its first stage has no controls: its control's pool is its own."""
    from ..sweep import Network

    pools = {}
    for path in groups_files:
        with open(path) as fh:
            decided = json.load(fh)
        if "controls" not in decided:
            continue  # selection.controls off
        architecture, weighting = decided["method"].split("-", 1)
        names = [Network(tuple(e["tasks"]), e["size"]).name for e in decided["controls"]]
        shared = {n for n, e in zip(names, decided["controls"]) if e.get("shared")}
        decided_names = {
            Network(tuple(e["tasks"]), e["size"]).name
            for e in decided["networks"]
            if not e.get("first_stage")
        }
        pools[architecture, weighting] = Pools(
            strategy=decided.get("strategy", "?"),
            decided=frozenset(decided_names - set(names)),
            controls=frozenset(set(names) - shared - decided_names),
            all_controls=tuple(names),
        )
    return pools


def failed_estimates(groups_files: Sequence[str | os.PathLike]) -> list[tuple[str, str]]:
    """(method, what the groups file says) for each method whose estimate failed: its groups
    were decided from fewer seeds, or none at all (the answer is then the first stage's)."""
    failed = []
    for path in groups_files:
        with open(path) as fh:
            decided = json.load(fh)
        if decided.get("estimate_failed"):
            failed.append((decided.get("method", str(path)), decided["estimate_failed"]))
    return failed


def take(cand: Candidates, keep: np.ndarray) -> Candidates:
    """``cand`` restricted to the networks ``keep`` (bool over networks)."""
    idx = np.flatnonzero(keep)
    return replace(
        cand,
        networks=[cand.networks[i] for i in idx],
        size=[cand.size[i] for i in idx],
        cost=cand.cost[idx],
        members=cand.members[idx],
        val=cand.val[idx],
        test=cand.test[idx],
        early=cand.early[idx],
        test_seeds=cand.test_seeds[idx],
        trained=cand.trained[idx],
    )


def split(cand: Candidates, pools: Pools) -> tuple[Candidates, Candidates]:
    """The strategy's pool (every network but the control-only ones) and the control's (every
    network but the decided-only ones: the same singles, all-in-one network and first stage)."""
    names = np.array(cand.networks, dtype=object)
    control_only = np.isin(names, list(pools.controls))
    decided_only = np.isin(names, list(pools.decided))
    return take(cand, ~control_only), take(cand, ~decided_only)


def control_outcomes(control: Candidates, settings: Settings) -> list[Outcome]:
    """The exact solve (OS, on validation) over the control's pool at every budget. A control
    that diverged is not in the pool (as any network); a task it leaves uncovered makes the
    budget 'unavailable' with the reason, never an error."""
    if settings.objective == "normalised":
        control = control.normalised()
    return _solve(control, control.val, CONTROL, settings, "control validation")


def comparison(scored: Sequence[Scored]) -> pd.DataFrame:
    """Per budget: the strategy's (OS), the control's and the all-in-one total test loss, the
    gains over all-in-one, and the share of the strategy's gain the estimate earns. Empty
    without control outcomes. The table the summary prints (and the intervals extend)."""
    by = {(s.outcome.method, s.outcome.budget): s for s in scored}
    budgets = sorted({b for m, b in by if m == CONTROL})
    rows = []
    for budget in budgets:
        totals = {
            m: (by[m, budget].test_total if (m, budget) in by and by[m, budget].ok else np.nan)
            for m in ("optimal", CONTROL, "all_in_one")
        }
        strategy, control, all_in_one = totals["optimal"], totals[CONTROL], totals["all_in_one"]
        gain = all_in_one - strategy
        share = (control - strategy) / gain if np.isfinite(gain) and gain > 0 else np.nan
        rows.append(
            {
                "budget": budget,
                "strategy_total": strategy,
                "control_total": control,
                "all_in_one_total": all_in_one,
                "strategy_gain": gain,
                "control_gain": all_in_one - control,
                "share_earned": share,
            }
        )
    return pd.DataFrame(rows)


def _cell(value: float, fmt: str = ".5f") -> str:
    return "—" if value is None or not np.isfinite(value) else format(value, fmt)


def compute_line(pools: Pools, cand: Candidates, seconds: float | None) -> str:
    """What the controls cost: trainings, budget units, measured training seconds."""
    trained = [n for n in dict.fromkeys(pools.all_controls) if n in pools.controls]
    index = {n: i for i, n in enumerate(cand.networks)}
    units = float(sum(cand.cost[index[n]] for n in trained if n in index))
    seeds = len(cand.seeds)
    missing = [n for n in trained if n not in index]
    line = (
        f"Controls' compute: {len(trained)} network(s) x {seeds} seed(s) = "
        f"{len(trained) * seeds} training(s), {units * seeds:g} full-network unit(s)"
    )
    if seconds is not None and np.isfinite(seconds):
        line += f", {seconds:.1f} s of training"
    line += " (the same number and sizes as the strategy's decided groups)."
    if missing:
        line += (
            f" Diverged or missing, so left out of the control's pool: {len(missing)} "
            f"({', '.join(f'`{n}`' for n in missing[:5])}{', …' if len(missing) > 5 else ''})."
        )
    return line


def section(pools: Pools, cand: Candidates, scored: Sequence[Scored], seconds=None) -> str:
    """The summary's "Against a random control" part for one training method."""
    table = comparison(scored)
    lines = [
        "",
        f"### Against a random control ({pools.strategy})",
        "",
        "The strategy's answer (optimal, OS) next to the same exact solve with its decided "
        "groups replaced by random task sets of the same sizes (`selection_method = "
        "'control'`), and the all-in-one network; measured total test loss, lower is better. "
        "Share earned: (control − strategy) / (all-in-one − strategy), the part of the "
        "strategy's gain over all-in-one that its estimate earns over random groups (1: all "
        "of it; 0: none; — where the strategy does not beat all-in-one).",
        "",
        "| budget | strategy | control | all-in-one | share earned |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in table.itertuples():
        share = "—" if not np.isfinite(row.share_earned) else f"{round(row.share_earned * 100):d} %"
        lines.append(
            f"| {row.budget:g} | {_cell(row.strategy_total)} | {_cell(row.control_total)} | "
            f"{_cell(row.all_in_one_total)} | {share} |"
        )
    notes = [s.outcome for s in scored if s.outcome.method == CONTROL and not s.ok]
    for o in notes[:5]:
        lines.append(f"\n- control at {o.budget:g}: {o.status}: {o.note}")
    if not pools.all_controls:
        lines += [
            "",
            "The strategy decided no group beyond its first stage, so there is no control to "
            "train: the control's pool is the strategy's, and its estimate earned nothing over "
            "what the first stage alone gives (share 0 % wherever the strategy beats "
            "all-in-one).",
        ]
    lines += ["", compute_line(pools, cand, seconds), ""]
    return "\n".join(lines)
