"""A user's own table: any Parquet or CSV, with named feature and task columns.

Multiclass targets may hold any labels: strings (``cat``/``dog``/``eel``) or integers with gaps
(3/7/9) are mapped to class ids 0..k-1 in sorted order, and the mapping is kept in
``Dataset.class_labels`` (``taskgroup validate`` and ``taskgroup export`` print it). Integer
labels that are already 0..k-1 are used as they are.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .base import Dataset, DatasetError, drop_constant_features

# Parsed tables and feature matrices, by file identity: every training of a sweep asks for its
# own targets, and a warm process must not parse the file (or copy the features) per network.
_read_cache: dict[tuple, pa.Table] = {}
_features_cache: dict[tuple, tuple[np.ndarray, bool]] = {}
_lock = threading.Lock()


def file_identity(path: Path) -> tuple:
    stat = os.stat(path)
    return (str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def _parse(path: Path) -> pa.Table:
    suffixes = "".join(path.suffixes).lower()
    if path.stat().st_size == 0:
        raise DatasetError(f"dataset.path: {path} is empty (0 bytes)")
    try:
        if suffixes.endswith(".parquet") or suffixes.endswith(".pq"):
            return pq.read_table(path)
        if ".csv" in suffixes or ".tsv" in suffixes:
            delimiter = "\t" if ".tsv" in suffixes else ","
            return pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=delimiter))
    except (pa.ArrowInvalid, OSError) as err:
        raise DatasetError(f"dataset.path: cannot read {path}: {err}") from None
    raise DatasetError(f"dataset.path: {path} is neither Parquet nor CSV/TSV")


def _read(path: Path) -> pa.Table:
    if not path.exists():
        raise DatasetError(f"dataset.path: file {path} does not exist")
    key = file_identity(path)
    with _lock:
        if key not in _read_cache:
            _read_cache.clear()  # one file version at a time: a rewritten table is new data
            table = _parse(path)
            if table.num_rows == 0:
                raise DatasetError(f"dataset.path: {path} has a header but no data rows")
            _read_cache[key] = table
        return _read_cache[key]


def _column(table: pa.Table, column: str, path: Path, role: str) -> pa.ChunkedArray:
    if column not in table.column_names:
        raise DatasetError(f"dataset.{role}: column {column!r} is not in {path}")
    return table[column]


def _is_numeric(col: pa.ChunkedArray) -> bool:
    # An all-empty CSV column reads as type null: numeric, every cell missing.
    return (
        pa.types.is_integer(col.type)
        or pa.types.is_floating(col.type)
        or pa.types.is_boolean(col.type)
        or pa.types.is_null(col.type)
    )


def _numeric(table: pa.Table, column: str, path: Path, role: str) -> np.ndarray:
    col = _column(table, column, path, role)
    if not _is_numeric(col):
        raise DatasetError(
            f"dataset.{role}: column {column!r} in {path} is not numeric (type {col.type})"
        )
    return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def _features(table: pa.Table, config: dict, path: Path, targets: list[str]):
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
    overlap = set(feature_cols) & set(targets)
    if overlap:
        raise DatasetError(f"dataset: columns {sorted(overlap)} are both features and targets")
    policy = config.get("constant_features", "drop")
    key = (file_identity(path), tuple(feature_cols), policy)
    with _lock:
        cached = _features_cache.get(key)
    if cached is not None:
        return cached
    features = np.stack([_numeric(table, c, path, "features") for c in feature_cols], axis=1)
    if np.isnan(features).any():
        bad = [c for c, col in zip(feature_cols, features.T) if np.isnan(col).any()]
        raise DatasetError(f"dataset.features: columns {bad[:5]} of {path} have missing values")
    features, kept, dropped = drop_constant_features(features, feature_cols, policy, str(path))
    binary = bool(np.isin(features, (0.0, 1.0)).all())
    columns = tuple(feature_cols[i] for i in kept)
    result = (features.astype(np.float32), binary, kept, dropped, columns)
    with _lock:
        if len(_features_cache) > 8:
            _features_cache.clear()
        _features_cache[key] = result
    return result


def _multiclass(col: pa.ChunkedArray, column: str, path: Path):
    """(class ids as float64 with NaN, number of classes, labels of ids 0..k-1 or None)."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        values = col.to_pylist()
        stripped = [v.strip() if isinstance(v, str) else None for v in values]
        present = sorted({v for v in stripped if v})
        if not present:
            raise DatasetError(f"dataset.targets: task column {column!r} of {path} has no labels")
        ids = {label: float(i) for i, label in enumerate(present)}
        y = np.array([ids[v] if v else np.nan for v in stripped], dtype=np.float64)
        return y, len(present), tuple(present)
    if not _is_numeric(col):
        raise DatasetError(
            f"dataset.targets: multiclass column {column!r} of {path} holds {col.type}, "
            "neither class labels (strings) nor integer class ids"
        )
    y = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    labelled = y[~np.isnan(y)]
    if labelled.size == 0:
        raise DatasetError(f"dataset.targets: task column {column!r} of {path} has no labels")
    if not np.equal(np.mod(labelled, 1), 0).all():
        raise DatasetError(
            f"dataset.targets: multiclass column {column!r} of {path} has non-integer values "
            "(class ids must be integers or strings; a real-valued target is a regression)"
        )
    present = np.unique(labelled)
    if present[0] == 0 and present[-1] == present.size - 1:
        return y, int(present.size), None  # already 0..k-1
    # Gaps (3/7/9) or negative ids: remapped in sorted order, the original ids recorded.
    ids = np.full(y.shape, np.nan)
    labelled_mask = ~np.isnan(y)
    ids[labelled_mask] = np.searchsorted(present, y[labelled_mask])
    return ids, int(present.size), tuple(str(int(v)) for v in present)


def load_table(config: dict) -> Dataset:
    """Columns named by config: ``features`` (list, or ``{prefix: ...}``) and ``targets``
    (mapping column -> binary | multiclass | regression). Empty cells are missing labels."""
    path = Path(config["path"]).expanduser()
    table = _read(path)
    targets_cfg: dict[str, str] = dict(config["targets"])
    features, binary, kept, dropped, columns = _features(table, config, path, list(targets_cfg))

    targets, n_classes, class_labels = [], [], {}
    for column, kind in targets_cfg.items():
        if kind == "multiclass":
            col = _column(table, column, path, "targets")
            y, k, labels = _multiclass(col, column, path)
            if labels is not None:
                class_labels[column] = labels
            n_classes.append(k)
            targets.append(y)
            continue
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
        else:
            n_classes.append(0)
        targets.append(y)

    return Dataset(
        name=str(config.get("label", path.stem)),
        features=features,
        targets=np.stack(targets, axis=1).astype(np.float32),
        task_names=tuple(targets_cfg),
        task_types=tuple(targets_cfg.values()),
        n_classes=tuple(n_classes),
        binary_features=binary,
        class_labels=class_labels,
        dropped_features=dropped,
        feature_indices=kept if dropped else None,
        feature_columns=columns,
    )
