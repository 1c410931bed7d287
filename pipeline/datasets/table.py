"""A user's own table: any Parquet or CSV, with named feature and task columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .base import Dataset, DatasetError


def _read(path: Path) -> pa.Table:
    if not path.exists():
        raise DatasetError(f"dataset.path: file {path} does not exist")
    suffixes = "".join(path.suffixes).lower()
    if suffixes.endswith(".parquet") or suffixes.endswith(".pq"):
        return pq.read_table(path)
    if ".csv" in suffixes or ".tsv" in suffixes:
        delimiter = "\t" if ".tsv" in suffixes else ","
        return pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=delimiter))
    raise DatasetError(f"dataset.path: {path} is neither Parquet nor CSV/TSV")


def _numeric(table: pa.Table, column: str, path: Path, role: str) -> np.ndarray:
    if column not in table.column_names:
        raise DatasetError(f"dataset.{role}: column {column!r} is not in {path}")
    col = table[column]
    # An all-empty CSV column reads as type null: numeric, every cell missing.
    if not (
        pa.types.is_integer(col.type)
        or pa.types.is_floating(col.type)
        or pa.types.is_boolean(col.type)
        or pa.types.is_null(col.type)
    ):
        raise DatasetError(
            f"dataset.{role}: column {column!r} in {path} is not numeric (type {col.type})"
        )
    return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def load_table(config: dict) -> Dataset:
    """Columns named by config: ``features`` (list, or ``{prefix: ...}``) and ``targets``
    (mapping column -> binary | multiclass | regression). Empty cells are missing labels."""
    path = Path(config["path"]).expanduser()
    table = _read(path)
    features_cfg = config["features"]
    if isinstance(features_cfg, dict):
        prefix = features_cfg["prefix"]
        feature_cols = [c for c in table.column_names if c.startswith(prefix)]
        if not feature_cols:
            raise DatasetError(
                f"dataset.features.prefix: no column of {path} starts with {prefix!r}"
            )
    else:
        feature_cols = list(features_cfg)
    targets_cfg: dict[str, str] = dict(config["targets"])
    overlap = set(feature_cols) & set(targets_cfg)
    if overlap:
        raise DatasetError(f"dataset: columns {sorted(overlap)} are both features and targets")

    features = np.stack([_numeric(table, c, path, "features") for c in feature_cols], axis=1)
    if np.isnan(features).any():
        bad = [c for c, col in zip(feature_cols, features.T) if np.isnan(col).any()]
        raise DatasetError(f"dataset.features: columns {bad[:5]} of {path} have missing values")
    constant = [c for c, col in zip(feature_cols, features.T) if np.ptp(col) == 0]
    if constant:
        raise DatasetError(
            f"dataset.features: columns {constant[:5]} of {path} are constant (carry no signal)"
        )

    targets, n_classes = [], []
    for column, kind in targets_cfg.items():
        y = _numeric(table, column, path, "targets")
        labelled = y[~np.isnan(y)]
        if labelled.size == 0:
            raise DatasetError(f"dataset.targets: task column {column!r} of {path} has no labels")
        if kind == "binary":
            if not np.isin(labelled, (0.0, 1.0)).all():
                raise DatasetError(
                    f"dataset.targets: binary column {column!r} of {path} has values not 0/1"
                )
            n_classes.append(2)
        elif kind == "multiclass":
            if not (np.equal(np.mod(labelled, 1), 0).all() and labelled.min() >= 0):
                raise DatasetError(
                    f"dataset.targets: multiclass column {column!r} of {path} "
                    "must hold class indices 0..k-1"
                )
            n_classes.append(int(labelled.max()) + 1)
        else:
            n_classes.append(0)
        targets.append(y)

    binary = bool(np.isin(features, (0.0, 1.0)).all())
    return Dataset(
        name=str(config.get("label", path.stem)),
        features=features.astype(np.float32),
        targets=np.stack(targets, axis=1).astype(np.float32),
        task_names=tuple(targets_cfg),
        task_types=tuple(targets_cfg.values()),
        n_classes=tuple(n_classes),
        binary_features=binary,
    )
