"""Each decided group's estimated benefit next to its measured one (results/estimates.parquet
and estimates.md): how well a strategy's estimate ranks what training then measures."""

from __future__ import annotations

import json
from collections.abc import Sequence

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


def estimates_table(metrics: str, groups_files: Sequence[str]):
    import pyarrow as pa

    from ..schema import ESTIMATES

    gains = measured_gains(metrics)
    mean_gain = (
        gains.groupby(["architecture", "weighting", "tasks", "split"])
        .agg(gain=("gain", "mean"), seeds=("seeds", "min"))
        .reset_index()
    )
    lookup = {
        (r.architecture, r.weighting, r.tasks, r.split): (r.gain, r.seeds)
        for r in mean_gain.itertuples()
    }
    rows: dict[str, list] = {name: [] for name in ESTIMATES.names}
    for path in groups_files:
        with open(path) as fh:
            decided = json.load(fh)
        architecture, weighting = decided["method"].split("-", 1)
        for entry in decided["networks"]:
            tasks = tuple(entry["tasks"])
            val = lookup.get((architecture, weighting, tasks, "val"), (None, None))
            test = lookup.get((architecture, weighting, tasks, "test"), (None, None))
            for name, value in (
                ("architecture", architecture), ("weighting", weighting),
                ("strategy", decided["strategy"]), ("tasks", list(tasks)),
                ("n_tasks", len(tasks)), ("estimated_benefit", entry["estimated_benefit"]),
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


def estimates_report(metrics: str, groups_files: Sequence[str], table_out, summary_out) -> None:
    from scipy.stats import spearmanr

    from ..io import atomic_write
    from ..schema import ESTIMATES, write_table

    table = estimates_table(metrics, groups_files)
    write_table(table, table_out, ESTIMATES)
    frame = table.to_pandas()
    lines = ["# Estimated against measured benefit of each decided group", ""]
    lines.append(
        "Measured gain: mean over the group's members of the relative final-epoch loss drop "
        "against each member's full single-task network (mean over seeds); positive is better. "
        "Estimated: the strategy's own estimate (tag: mean TAG affinity onto the members; "
        "sampled: minus the members' mean normalised loss in the subsets they share; both "
        "unitless, higher is better; pairs: HOA's estimated validation gain). Only the ranking "
        "of the estimates is comparable with the measured gains; totals never mix the two."
    )
    for (architecture, weighting), part in frame.groupby(["architecture", "weighting"]):
        part = part.sort_values("estimated_benefit", ascending=False)
        measured = part.dropna(subset=["estimated_benefit", "measured_val_gain"])
        lines += ["", f"## {architecture} × {weighting} ({part['strategy'].iloc[0]})", ""]
        if len(measured) >= 3:
            rho = spearmanr(measured["estimated_benefit"], measured["measured_val_gain"])[0]
            lines.append(
                f"Rank correlation (Spearman) of estimated and measured validation gain over "
                f"{len(measured)} groups: **{rho:+.2f}**."
            )
            lines.append("")
        lines += [
            "| group | tasks | estimated | measured val gain | measured test gain |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in part.head(MAX_ROWS_SHOWN).itertuples():
            cells = [
                _group_label(row.tasks), str(row.n_tasks),
                *(("—" if v is None or v != v else f"{v:+.4f}")
                  for v in (row.estimated_benefit, row.measured_val_gain,
                            row.measured_test_gain)),
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        if len(part) > MAX_ROWS_SHOWN:
            lines.append(f"\n{len(part) - MAX_ROWS_SHOWN} more in estimates.parquet.")
    with atomic_write(summary_out) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
