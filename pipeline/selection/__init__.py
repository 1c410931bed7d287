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
    samples: SampleSource | None = None,
) -> pd.DataFrame:
    if frames.candidates.empty:
        raise ValueError(
            f"{source}: no candidate networks (all diverged, or none has a loss "
            "for the selected tasks)"
        )
    results = []
    for cand in build(frames, settings.epoch, settings.cost):
        outcomes = solve_candidates(cand, settings)
        results.append((cand, [score(o, cand) for o in outcomes]))
        if not any(o.method == "optimal" and o.status == "ok" for o in outcomes):
            notes = {o.note for o in outcomes if o.method == "optimal"}
            raise InfeasibleBudget(f"{cand.label}: no budget is feasible: {'; '.join(notes)}")
    frame = groupings_frame(results, settings)
    gains = gains_frame(results, settings, samples)
    write_groupings(frame, out.groupings)
    write_table(pa.Table.from_pandas(gains, preserve_index=False), out.gains, GAINS)
    plot_curves(frame, out.plot)
    write_text(summary_markdown(results, settings, frames.excluded, source, gains), out.summary)
    return frame


def run_selection(
    metrics_path: str | os.PathLike,
    selection_config: dict,
    out_dir: str | os.PathLike | object,
    tasks: list[str] | None = None,
    log_path: str | os.PathLike | None = None,
    networks_path: str | os.PathLike | None = None,
    split_path: str | os.PathLike | None = None,
) -> None:
    """Solve from a collected metrics Parquet file (METRICS schema) with the config's
    ``selection:`` section; write groupings.parquet, budget_curve.png and summary.md.

    ``out_dir``: a directory, or an object with groupings/plot/summary paths (Snakemake's
    output). ``tasks``: the tasks to cover (default: every task in the metrics). ``log_path``:
    where to append a one-line-per-method log. ``networks_path`` (the collected manifest) and
    ``split_path``: where one seed's per-sample test losses are found for the bootstrap
    intervals (gains.py); without them a one-seed interval says it has none.
    """
    settings = Settings.from_config(selection_config)
    frames = query_metrics(metrics_path, settings.esa_fraction, tasks)
    samples = SampleSource(networks_path, split_path, settings.epoch)
    frame = _solve_and_write(frames, settings, OutputPaths.of(out_dir), str(metrics_path), samples)
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
