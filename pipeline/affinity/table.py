"""Inter-task affinity tables: the long format, reading, checking, and the square matrix.

Long format (docs/affinity.md), one row per (source, target[, epoch]):

    source  str    the task whose gradient (or presence) acts
    target  str    the task whose loss is affected
    value   float  the affinity Z(source -> target); HIGHER = source helps target more
    epoch   int    optional: several epochs are averaged (weighted by ``steps`` if present)
    steps   float  optional: how many lookahead steps the value averages (weight, >= 0)

Rows with source == target (self-affinity) are allowed and kept on the diagonal; selection
ignores them except HOA-style tables whose singletons take the diagonal. Every ordered pair of
distinct tasks must be present.

Non-finite values. Without an ``epoch`` column every value must be finite (an error names the
pairs). With epochs, a NaN value means "no finite lookahead step in that epoch" (a task with no
labels in those batches): that epoch is left out of the pair's average, and the pair is an
error only when no epoch is finite. An infinite value is always an error.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED = ["source", "target", "value"]
OPTIONAL = ["epoch", "steps"]
SHOWN = 5  # how many offending items an error names


class AffinityFormatError(ValueError):
    """An affinity table does not follow the long format of docs/affinity.md."""


@dataclass(frozen=True)
class Affinity:
    """A square affinity: ``matrix[i, j]`` = Z(tasks[i] -> tasks[j]), source i onto target j
    (higher = better partner). The diagonal (self-affinity) may be NaN; it is unused by TAG.

    TAG's published tables are recipient-major (row = target, column = source): build from
    them with ``Affinity.from_recipient_table`` and get one back with ``recipient_table()``.
    """

    tasks: tuple[str, ...]
    matrix: np.ndarray

    def __post_init__(self):
        m = np.asarray(self.matrix, dtype=float)
        n = len(self.tasks)
        if m.shape != (n, n):
            raise AffinityFormatError(f"matrix must be {n} x {n}, got {m.shape}")
        if len(set(self.tasks)) != n:
            raise AffinityFormatError("task names must be unique")
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "matrix", m)

    @classmethod
    def from_recipient_table(cls, tasks: Sequence[str], table) -> Affinity:
        """From a TAG-style table: ``table[j][i]`` (or ``table[target][source]`` if a dict of
        dicts) is the affinity of source i onto target j."""
        tasks = tuple(tasks)
        if isinstance(table, dict):
            table = [[table[t][s] for s in tasks] for t in tasks]
        return cls(tasks, np.asarray(table, dtype=float).T.copy())

    def recipient_table(self) -> np.ndarray:
        """``T[t, o]`` = Z(o -> t): row = recipient (target), column = partner (source)."""
        return self.matrix.T.copy()

    def to_frame(self, diagonal: bool = True) -> pd.DataFrame:
        """The long format (source, target, value)."""
        n = len(self.tasks)
        rows = [
            (self.tasks[i], self.tasks[j], float(self.matrix[i, j]))
            for i in range(n)
            for j in range(n)
            if (i != j or (diagonal and np.isfinite(self.matrix[i, j])))
        ]
        return pd.DataFrame(rows, columns=["source", "target", "value"])


def _name_pairs(pairs: list[tuple[str, str]]) -> str:
    shown = ", ".join(f"{s!r}->{t!r}" for s, t in pairs[:SHOWN])
    more = f" and {len(pairs) - SHOWN} more" if len(pairs) > SHOWN else ""
    return f"{shown}{more} ({len(pairs)} in all)"


def read_affinity(path: str | os.PathLike, tasks: Sequence[str] | None = None) -> Affinity:
    """Read a long-format affinity table (.parquet, .csv or .tsv) and check it (module doc)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no affinity table here")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix in (".csv", ".tsv"):
        # names are strings whatever they look like ("1", "NA", "nan" are task names)
        frame = pd.read_csv(
            path,
            sep="\t" if suffix == ".tsv" else ",",
            dtype={"source": str, "target": str},
            keep_default_na=False,
            na_values={"value": ["", "nan", "NaN", "NA"], "steps": [""], "epoch": [""]},
        )
    else:
        raise AffinityFormatError(f"{path}: expected a .parquet, .csv or .tsv file")
    return affinity_from_frame(frame, tasks=tasks, what=str(path))


def affinity_from_frame(
    frame: pd.DataFrame, tasks: Sequence[str] | None = None, what: str = "affinity table"
) -> Affinity:
    """Check a long-format frame and average it into an ``Affinity`` (module doc). Task order:
    ``tasks`` if given, else first appearance (sources and targets, row by row)."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise AffinityFormatError(
            f"{what}: missing required column(s) {missing}; need source, target, value "
            f"(optional epoch, steps); see docs/affinity.md"
        )
    # other columns (provenance: run, config_hash, ...) are allowed and ignored
    frame = frame[[c for c in REQUIRED + OPTIONAL if c in frame.columns]].copy()
    for column in ("source", "target"):
        if frame[column].isna().any():
            raise AffinityFormatError(
                f"{what}: empty {column} in {int(frame[column].isna().sum())} row(s)"
            )
        frame[column] = frame[column].astype(str)
        if (frame[column] == "").any():
            raise AffinityFormatError(
                f"{what}: empty task name in column {column} "
                f"({int((frame[column] == '').sum())} row(s))"
            )
    try:
        frame["value"] = pd.to_numeric(frame["value"], errors="raise").astype(float)
    except (ValueError, TypeError) as err:
        raise AffinityFormatError(f"{what}: column value must be numeric ({err})") from None
    has_epoch = "epoch" in frame.columns
    if "steps" in frame.columns:
        steps = pd.to_numeric(frame["steps"], errors="coerce")
        if steps.isna().any() or (steps < 0).any():
            raise AffinityFormatError(f"{what}: steps must be numbers >= 0")
        frame["steps"] = steps.astype(float)
    else:
        frame["steps"] = 1.0
    if has_epoch and frame["epoch"].isna().any():
        raise AffinityFormatError(
            f"{what}: empty epoch in {int(frame['epoch'].isna().sum())} row(s)"
        )

    key = ["source", "target"] + (["epoch"] if has_epoch else [])
    duplicated = frame.duplicated(key, keep=False)
    if duplicated.any():
        pairs = list(
            dict.fromkeys(zip(frame.loc[duplicated, "source"], frame.loc[duplicated, "target"]))
        )
        where = " (same epoch)" if has_epoch else ""
        raise AffinityFormatError(f"{what}: duplicate rows{where} for {_name_pairs(pairs)}")

    infinite = np.isinf(frame["value"].to_numpy())
    if infinite.any():
        pairs = list(
            dict.fromkeys(zip(frame.loc[infinite, "source"], frame.loc[infinite, "target"]))
        )
        raise AffinityFormatError(f"{what}: infinite value for {_name_pairs(pairs)}")

    seen = list(dict.fromkeys(v for s, t in zip(frame["source"], frame["target"]) for v in (s, t)))
    if tasks is None:
        order = tuple(seen)
    else:
        order = tuple(str(t) for t in tasks)
        if len(set(order)) != len(order):
            raise AffinityFormatError("the task list names a task twice")
        unknown = [t for t in seen if t not in set(order)]
        if unknown:
            shown = ", ".join(repr(t) for t in unknown[:SHOWN])
            raise AffinityFormatError(
                f"{what}: task(s) not in the task list: {shown}"
                + (f" and {len(unknown) - SHOWN} more" if len(unknown) > SHOWN else "")
                + f" ({len(unknown)} in all)"
            )
    if len(order) < 2:
        raise AffinityFormatError(f"{what}: need at least 2 tasks, found {len(order)}")

    # average over epochs: weight = steps, NaN epochs left out
    finite = np.isfinite(frame["value"].to_numpy())
    weight = frame["steps"].to_numpy() * finite
    frame["_w"] = weight
    frame["_wv"] = np.where(finite, frame["value"].to_numpy(), 0.0) * weight
    frame["_finite"] = finite
    agg = frame.groupby(["source", "target"], sort=False).agg(
        w=("_w", "sum"), wv=("_wv", "sum"), any_finite=("_finite", "any"), rows=("value", "size")
    )
    # pairs with finite values but zero total steps: plain mean of the finite values
    plain = frame[frame["_finite"]].groupby(["source", "target"], sort=False)["value"].mean()
    mean = pd.Series(np.nan, index=agg.index)
    ok = agg["w"] > 0
    mean[ok] = agg.loc[ok, "wv"] / agg.loc[ok, "w"]
    zero = agg["any_finite"] & ~ok
    mean[zero] = plain.reindex(agg.index[zero]).to_numpy()

    n = len(order)
    pos = {t: i for i, t in enumerate(order)}
    matrix = np.full((n, n), np.nan)
    present = np.zeros((n, n), dtype=bool)
    for (s, t), v in mean.items():
        matrix[pos[s], pos[t]] = v
        present[pos[s], pos[t]] = True
    off = ~np.eye(n, dtype=bool)
    absent = [(order[i], order[j]) for i, j in zip(*np.nonzero(off & ~present))]
    if absent:
        raise AffinityFormatError(
            f"{what}: missing (source, target) pair(s): {_name_pairs(absent)}"
        )
    nan = [(order[i], order[j]) for i, j in zip(*np.nonzero(off & ~np.isfinite(matrix)))]
    if nan:
        why = " in every epoch" if has_epoch else ""
        raise AffinityFormatError(
            f"{what}: non-finite (NaN) value{why} for {_name_pairs(nan)}; selection needs a "
            f"finite affinity for every pair"
        )
    return Affinity(order, matrix)
