"""Each decided group's estimated benefit next to its measured one (results/estimates.parquet
and estimates.md): how well a strategy's estimate ranks what training then measures."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd


def measured_gains(metrics: str) -> pd.DataFrame:
    """Per multi-task network x member x split: the relative loss gain over the member's
    full single-task network (pipeline/sql/closed_loop/member_gains.sql)."""
    from importlib import resources

    import duckdb

    sql = resources.files("pipeline.sql").joinpath("closed_loop/member_gains.sql").read_text()
    with duckdb.connect() as con:
        frame = con.execute(sql, {"metrics": str(metrics)}).df()
    frame["tasks"] = frame["tasks"].map(tuple)
    return frame


def _strategy(name: str):
    from . import STRATEGIES

    return STRATEGIES[name]({})


def estimates_table(metrics: str, groups_files: Sequence[str]):
    """One row per decided group and training method: the strategy's estimate in its readable
    unit, the measured gains in %."""
    import pyarrow as pa

    from ..schema import ESTIMATES

    gains = measured_gains(metrics)
    mean_gain = (
        gains.groupby(["architecture", "weighting", "tasks", "split"])
        .agg(gain=("gain", "mean"), seeds=("seeds", "min"))
        .reset_index()
    )
    lookup = {
        (r.architecture, r.weighting, r.tasks, r.split): (100.0 * r.gain, r.seeds)
        for r in mean_gain.itertuples()
    }
    rows: dict[str, list] = {name: [] for name in ESTIMATES.names}
    for path in groups_files:
        with open(path) as fh:
            decided = json.load(fh)
        strategy = _strategy(decided["strategy"])
        architecture, weighting = decided["method"].split("-", 1)
        for entry in decided["networks"]:
            tasks = tuple(entry["tasks"])
            val = lookup.get((architecture, weighting, tasks, "val"), (None, None))
            test = lookup.get((architecture, weighting, tasks, "test"), (None, None))
            raw = entry["estimated_benefit"]
            estimate = None if raw is None else strategy.readable(raw)
            for name, value in (
                ("architecture", architecture), ("weighting", weighting),
                ("strategy", decided["strategy"]), ("tasks", list(tasks)),
                ("n_tasks", len(tasks)), ("estimated_benefit", estimate),
                ("estimate_unit", strategy.estimate_unit),
                ("measured_val_gain", val[0]), ("measured_test_gain", test[0]),
                ("seeds", val[1]),
            ):  # fmt: skip
                rows[name].append(None if value is None or value != value else value)
    return pa.table(rows, schema=ESTIMATES)


def _group_label(tasks: Sequence[str], shown: int = 4) -> str:
    """A group as text that stays short at hundreds of tasks."""
    names = ", ".join(t.replace("|", "\\|") for t in tasks[:shown])
    return (
        names if len(tasks) <= shown else f"{names}, … (+{len(tasks) - shown}; {len(tasks)} tasks)"
    )


MAX_ROWS_SHOWN = 40


def _number(value) -> str:
    """Three significant digits, whatever the scale: 12.3, 0.0456, -1.23e+03."""
    if value is None or value != value:
        return "—"
    return f"{value:+.3g}"


def estimates_report(metrics: str, groups_files: Sequence[str], table_out, summary_out) -> None:
    from scipy.stats import spearmanr

    from ..io import atomic_write
    from ..schema import ESTIMATES, write_table

    table = estimates_table(metrics, groups_files)
    write_table(table, table_out, ESTIMATES)
    frame = table.to_pandas()
    lines = ["# Estimated against measured benefit of each decided group", ""]
    lines.append(
        "Measured gain (%): mean over the group's members of the relative final-epoch loss "
        "drop against each member's full single-task network (mean over seeds); positive is "
        "better. Estimated: the strategy's own estimate, in the unit named per section. Only "
        "the ranking of the estimates is comparable with the measured gains; totals never mix "
        "the two."
    )
    for path in groups_files:
        with open(path, encoding="utf-8") as fh:
            failed = json.load(fh).get("estimate_failed")
        if failed:
            lines += ["", f"**{Path(path).stem}: {failed}.**"]
    for (architecture, weighting), part in frame.groupby(["architecture", "weighting"]):
        part = part.sort_values("estimated_benefit", ascending=False)
        measured = part.dropna(subset=["estimated_benefit", "measured_val_gain"])
        name = part["strategy"].iloc[0]
        unit = part["estimate_unit"].iloc[0]
        lines += ["", f"## {architecture} × {weighting} ({name})", ""]
        lines.append(f"Estimate: {_strategy(name).estimate_description}; unit: **{unit}**.")
        lines.append("")
        if len(measured) >= 3:
            rho = spearmanr(measured["estimated_benefit"], measured["measured_val_gain"])[0]
            lines.append(
                f"Rank correlation (Spearman) of estimated and measured validation gain over "
                f"{len(measured)} groups: **{rho:+.2f}**."
            )
            lines.append("")
        lines += [
            f"| group | tasks | estimated ({unit}) | measured val gain (%) | "
            "measured test gain (%) |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in part.head(MAX_ROWS_SHOWN).itertuples():
            cells = [
                _group_label(row.tasks), str(row.n_tasks),
                *(_number(v) for v in (row.estimated_benefit, row.measured_val_gain,
                                       row.measured_test_gain)),
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        if len(part) > MAX_ROWS_SHOWN:
            lines.append(f"\n{len(part) - MAX_ROWS_SHOWN} more in estimates.parquet.")
    with atomic_write(summary_out) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def estimate_picture(
    metrics: str,
    groups_file: str,
    estimates: Sequence[str],
    first_stage: Sequence[str],
    out: str,
) -> str:
    """The task x task picture of one training method's estimate (``groups_file``'s method)
    and of its measured pair gains where pairs were trained; returns what it shows."""
    import numpy as np

    from .picture import grouping_order, pair_gain_matrix, plot_matrices

    with open(groups_file) as fh:
        decided = json.load(fh)
    strategy = _strategy(decided["strategy"])
    tasks = list(decided["tasks"])
    architecture, weighting = decided["method"].split("-", 1)
    panels = []
    affinity = strategy.affinity(list(estimates), list(first_stage), tasks)
    if affinity is not None:
        readable = np.vectorize(strategy.readable, otypes=[float])(affinity.matrix)
        panels.append((f"estimate ({strategy.name})", readable, strategy.estimate_unit))
    pairs = pair_gain_matrix(measured_gains(metrics), architecture, weighting, tasks)
    if pairs is not None:
        trained = int(np.isfinite(pairs).sum()) // 2
        panels.append(
            (f"measured pair gain ({trained} pairs trained)", pairs, "% validation-loss gain")
        )
    if not panels:
        panels.append(("nothing estimated", np.full((len(tasks), len(tasks)), np.nan), ""))
    fallback = panels[0][1]
    order, blocks = grouping_order(tasks, decided.get("groupings"), fallback)
    how = "ordered by the decided grouping, groups outlined" if blocks else "clustered order"
    title = f"{decided['method']}, {len(tasks)} tasks, {how}"
    plot_matrices(panels, tasks, order, blocks, out, title)
    return f"{len(panels)} panel(s): {', '.join(p[0] for p in panels)}; {how}"
