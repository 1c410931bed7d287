"""The budgeted grouping solve (issue #3; Standley et al., ICML 2020): which networks to deploy
for a given inference budget, by OS, ESA and HOA, against all-in-one, independent, random and
worst baselines.

Entry points: :func:`run_selection` (collected sweep metrics, as the Snakemake rule calls it) and
:func:`run_external` (results trained elsewhere, docs/external-results.md).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ..schema import GAINS, GROUPINGS, write_table
from . import controls
from .candidates import CandidateFrames, build, query_external, query_metrics
from .external import read_external
from .gains import SampleSource, gains_frame
from .outputs import groupings_frame, plot_curves, summary_markdown, write_groupings, write_text
from .scoring import score
from .solver import InfeasibleBudget, Solution, solve, solve_budgets
from .solving import Settings, solve_candidates

__all__ = [
    "GROUPINGS",
    "InfeasibleBudget",
    "OutputPaths",
    "Settings",
    "Solution",
    "run_external",
    "run_selection",
    "solve",
    "solve_budgets",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputPaths:
    groupings: Path
    plot: Path
    summary: Path
    gains: Path

    @classmethod
    def of(cls, out: str | os.PathLike | object) -> OutputPaths:
        """A directory (groupings.parquet, budget_curve.png, summary.md, gains.parquet inside
        it) or anything with ``groupings``, ``plot``, ``summary`` and ``gains`` attributes (a
        Snakemake rule's output)."""
        if isinstance(out, (str, os.PathLike)):
            directory = Path(out)
            return cls(
                directory / "groupings.parquet",
                directory / "budget_curve.png",
                directory / "summary.md",
                directory / "gains.parquet",
            )
        return cls(Path(out.groupings), Path(out.plot), Path(out.summary), Path(out.gains))


def _solve_and_write(
    frames: CandidateFrames,
    settings: Settings,
    out: OutputPaths,
    source: str,
    pools: dict | None = None,
    seconds: pd.DataFrame | None = None,
    strategy: dict | None = None,
    samples: SampleSource | None = None,
) -> pd.DataFrame:
    if frames.candidates.empty:
        raise ValueError(
            f"{source}: no candidate networks (all diverged, or none has a loss "
            "for the selected tasks)"
        )
    results, sections = [], []
    for cand in build(frames, settings.epoch, settings.cost):
        mine = (pools or {}).get((cand.architecture, cand.weighting)) if settings.controls else None
        if mine is not None:
            # The strategy's answer never uses a control; the control's never a decided group.
            cand, control = controls.split(cand, mine)
        outcomes = solve_candidates(cand, settings, _left_out(strategy))
        if mine is not None:
            outcomes += controls.control_outcomes(control, settings)
        scored = [score(o, cand) for o in outcomes]
        results.append((cand, scored))
        if mine is not None:
            sections.append(controls.section(mine, control, scored, _seconds(seconds, cand, mine)))
        else:
            sections.append("")
        if not any(o.method == "optimal" and o.status == "ok" for o in outcomes):
            notes = {o.note for o in outcomes if o.method == "optimal"}
            raise InfeasibleBudget(f"{cand.label}: no budget is feasible: {'; '.join(notes)}")
    frame = groupings_frame(results, settings)
    gains = gains_frame(results, settings, samples)
    write_groupings(frame, out.groupings)
    write_table(pa.Table.from_pandas(gains, preserve_index=False), out.gains, GAINS)
    plot_curves(frame, out.plot)
    text = summary_markdown(
        results, settings, frames.excluded, source, sections, _strategy_line(strategy), gains
    )
    write_text(text, out.summary)
    return frame


def _left_out(strategy: dict | None) -> dict[str, str]:
    """Methods not run for this sweep's strategy, with the one line that says why."""
    if strategy is None or strategy.get("trains_pairs", True):
        return {}
    return {
        "hoa": f"left out: Standley's HOA estimates task sets from every trained pair, and "
        f"sweep.strategy {strategy['name']} trains pairs only where it decided them"
    }


def _strategy_line(strategy: dict | None) -> str:
    """The summary's statement of the strategy and of which totals are measured."""
    if strategy is None:
        return ""
    name = strategy["name"]
    if not strategy.get("estimates"):
        what = f"Strategy: **{name}** (`sweep.strategy`): nothing estimated."
    else:
        what = (
            f"Strategy: **{name}** (`sweep.strategy`). Its estimate ({strategy['estimate']}) "
            "only decided which groups to train; estimates.md sets it against what was measured."
        )
    notes = strategy.get("estimate_failed", [])
    failed = "".join(f" **{method}: {note}.**" for method, note in notes)
    return (
        f"{what}{failed} Every total below is **measured** (test losses of trained networks), "
        "except HOA's choices that include a task set never trained (`*`), for which no total "
        "is reported.\n\n"
    )


def _seconds(seconds: pd.DataFrame | None, cand, pools) -> float | None:
    if seconds is None:
        return None
    mine = seconds[
        (seconds["architecture"] == cand.architecture)
        & (seconds["weighting"] == cand.weighting)
        & seconds["network"].isin(list(pools.controls))
    ]
    return float(mine["seconds"].sum())


def network_seconds(metrics_path: str | os.PathLike) -> pd.DataFrame:
    """Training seconds per method and network, summed over seeds (network_seconds.sql)."""
    import duckdb

    from .candidates import sql

    with duckdb.connect() as con:
        return con.execute(sql("network_seconds"), {"metrics": str(metrics_path)}).df()


def run_selection(
    metrics_path: str | os.PathLike,
    selection_config: dict,
    out_dir: str | os.PathLike | object,
    tasks: list[str] | None = None,
    log_path: str | os.PathLike | None = None,
    groups_files: list[str] | None = None,
    strategy: dict | None = None,
    networks_path: str | os.PathLike | None = None,
    split_path: str | os.PathLike | None = None,
) -> None:
    """Solve from a collected metrics Parquet file (METRICS schema) with the config's
    ``selection:`` section; write groupings.parquet, budget_curve.png and summary.md.

    ``out_dir``: a directory, or an object with groupings/plot/summary paths (Snakemake's
    output). ``tasks``: the tasks to cover (default: every task in the metrics). ``log_path``:
    where to append a one-line-per-method log. ``groups_files``: an estimating strategy's
    decided groups (results/groups/*.json); their controls get their own solve (controls.py).
    ``strategy``: the sweep's strategy (name, estimates, estimate, trains_pairs), for the
    summary and to leave out HOA where no pairs were trained. ``networks_path`` (the collected
    manifest) and ``split_path``: where one seed's per-sample test losses are found for the
    bootstrap intervals (gains.py); without them a one-seed interval says it has none.
    """
    settings = Settings.from_config(selection_config)
    frames = query_metrics(metrics_path, settings.esa_fraction, tasks)
    pools = controls.read_pools(groups_files or [])
    failed = controls.failed_estimates(groups_files or [])
    if failed and strategy is not None:
        strategy = {**strategy, "estimate_failed": failed}
    seconds = network_seconds(metrics_path) if pools else None
    samples = SampleSource(networks_path, split_path, settings.epoch)
    frame = _solve_and_write(
        frames, settings, OutputPaths.of(out_dir), str(metrics_path), pools, seconds, strategy,
        samples,
    )  # fmt: skip
    _log(frame, frames, log_path)


def run_external(
    path: str | os.PathLike,
    selection_config: dict,
    out_dir: str | os.PathLike | object,
    tasks: list[str] | None = None,
) -> None:
    """The same solve from an external results file (Parquet or CSV; docs/external-results.md)."""
    settings = Settings.from_config(selection_config)
    frames = query_external(read_external(path), tasks)
    _solve_and_write(frames, settings, OutputPaths.of(out_dir), str(path))


def _log(frame: pd.DataFrame, frames: CandidateFrames, log_path: str | os.PathLike | None) -> None:
    ok = frame[(frame["status"] == "ok") & (frame["selection_method"] == "optimal")]
    lines = [
        f"{frames.candidates['network'].nunique()} candidate networks, "
        f"{len(frames.excluded)} excluded as diverged"
    ]
    for (arch, weighting, budget), group in ok.groupby(["architecture", "weighting", "budget"]):
        lines.append(
            f"{arch}/{weighting} budget {budget:g}: optimal test total "
            f"{group['test_total'].iloc[0]:.5f} with {list(group['networks'].iloc[0])}"
        )
    for line in lines:
        log.info(line)
    if log_path is not None:
        with open(log_path, "a") as fh:
            fh.write("\n".join(lines) + "\n")
