"""The external results format: per-network losses trained elsewhere, so a user can run only
the solve (``taskgroup solve-external``). Documented in docs/external-results.md.

Long format, one row per network x task (x seed, optionally):

    network      str     a unique name per network, e.g. "s+d@full"
    cost         float   inference cost (full-size single-task network = 1.0)
    task         str     one task the network has an output for
    val_loss     float   selection loss (validation, end of training)
    test_loss    float   evaluation loss (test, end of training)
    early_loss   float   optional: validation loss early in training, for ESA (NaN: no ESA)
    tasks        list    optional: the network's task set (CSV: "s+d"); checked against rows
    size         str     optional: a free label, e.g. full | half
    seed         int     optional: several seeds are averaged; their spread is reported
    architecture str     optional: results of several methods are solved separately
    weighting    str     optional: ditto
    status       str     optional: ok | diverged (diverged networks are excluded)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED = ["network", "cost", "task", "val_loss", "test_loss"]
OPTIONAL_DEFAULTS = {
    "early_loss": np.nan,
    "size": None,
    "seed": 0,
    "architecture": "external",
    "weighting": "external",
    "status": "ok",
}
COLUMNS = [
    "network",
    "tasks",
    "size",
    "cost",
    "task",
    "val_loss",
    "test_loss",
    "early_loss",
    "seed",
    "architecture",
    "weighting",
    "status",
]


class ExternalFormatError(ValueError):
    """The external results file does not follow docs/external-results.md."""


def read_external(path: str | os.PathLike) -> pd.DataFrame:
    """Read a Parquet or CSV external results file and return it checked and complete."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no external results file here")
    if path.suffix.lower() == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix.lower() in (".csv", ".tsv"):
        frame = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    else:
        raise ExternalFormatError(f"{path}: expected a .parquet, .csv or .tsv file")
    return check_external(frame, what=str(path))


def _as_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [t for t in value.split("+") if t]
    return [str(t) for t in value]


def check_external(frame: pd.DataFrame, what: str = "external results") -> pd.DataFrame:
    """Fill optional columns with their defaults and check the format; ExternalFormatError
    naming the problem otherwise."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ExternalFormatError(
            f"{what}: missing required column(s) {missing}; see docs/external-results.md"
        )
    unknown = [c for c in frame.columns if c not in COLUMNS]
    if unknown:
        raise ExternalFormatError(f"{what}: unknown column(s) {unknown}; known: {COLUMNS}")
    frame = frame.copy()
    for column, default in OPTIONAL_DEFAULTS.items():
        if column not in frame.columns:
            frame[column] = default
    for column in ("network", "task", "architecture", "weighting", "status"):
        frame[column] = frame[column].astype(str)
    frame["size"] = frame["size"].astype(object).where(frame["size"].notna(), None)
    frame["seed"] = frame["seed"].astype("int64")
    for column in ("cost", "val_loss", "test_loss", "early_loss"):
        frame[column] = pd.to_numeric(frame[column], errors="raise").astype(float)
    bad_status = sorted(set(frame["status"]) - {"ok", "diverged"})
    if bad_status:
        raise ExternalFormatError(f"{what}: status must be 'ok' or 'diverged', found {bad_status}")
    key = ["architecture", "weighting", "network", "seed", "task"]
    duplicated = frame.duplicated(key)
    if duplicated.any():
        first = frame.loc[duplicated, key].iloc[0].to_dict()
        raise ExternalFormatError(f"{what}: {int(duplicated.sum())} duplicate rows, e.g. {first}")
    per_net = frame.groupby(["architecture", "weighting", "network"])
    varying = per_net["cost"].nunique()
    if (varying > 1).any():
        raise ExternalFormatError(
            f"{what}: network(s) with more than one cost: {list(varying[varying > 1].index)}"
        )
    if not (frame["cost"] > 0).all():
        raise ExternalFormatError(f"{what}: every cost must be positive")
    ok = frame["status"] == "ok"
    for column in ("val_loss", "test_loss"):
        if not np.isfinite(frame.loc[ok, column]).all():
            raise ExternalFormatError(f"{what}: {column} must be finite for every 'ok' row")
    if "tasks" in frame.columns:
        frame["tasks"] = frame["tasks"].map(_as_list)
        for (_, _, network), group in per_net:
            declared = {t for tasks in group["tasks"] for t in tasks}
            if declared != set(group["task"]):
                raise ExternalFormatError(
                    f"{what}: network {network!r} declares tasks {sorted(declared)} but has "
                    f"rows for {sorted(set(group['task']))}"
                )
    else:
        # One list per network, handed to its rows by a merge: a MultiIndex lookup per row
        # took 2.6 s on 37,000 rows.
        tasks_of = per_net["task"].agg(lambda s: sorted(set(s))).rename("tasks").reset_index()
        frame = frame.merge(
            tasks_of, on=["architecture", "weighting", "network"], how="left", validate="m:1"
        )
    return frame[COLUMNS]


def write_external(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write an external results table (Parquet, or CSV with tasks '+'-joined)."""
    path = Path(path)
    frame = check_external(frame)
    if path.suffix.lower() == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        out = frame.assign(tasks=frame["tasks"].map("+".join))
        out.to_csv(path, index=False)
