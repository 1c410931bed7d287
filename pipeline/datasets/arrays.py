"""Your own arrays: a ``.npz`` file with the inputs and one array per task.

Config (``dataset``)::

    name: arrays
    path: data.npz
    inputs: x                     # the inputs' array (default x)
    targets:                      # array name -> task type (or {type, classes})
      depth: dense_regression
      seg: {type: segmentation, classes: 4}
      label: binary

Arrays (N samples): inputs (N, F) or (N, C, H, W), any real dtype. Vector tasks (binary,
multiclass, regression): shape (N,), NaN = missing (multiclass: integer class ids 0..k-1, -1 or
NaN = missing). Dense tasks, images only, all of one H x W: segmentation (N, H, W) integer class
ids 0..classes-1, -1 (or NaN) = missing pixel; dense_regression (N, H, W) or (N, 1, H, W),
NaN = missing; normals (N, 3, H, W), a NaN component = missing pixel (vectors need not be unit:
the loss and metric use directions). Only ``.npz`` (``numpy.savez``/``savez_compressed``)
is read: images in Parquet would need a declared shape per column and gain nothing here.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from .base import DENSE_TYPES, Dataset, DatasetError, drop_constant_features

_cache: dict[tuple, dict[str, np.ndarray]] = {}
_lock = threading.Lock()


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise DatasetError(f"dataset.path: file {path} does not exist")
    if path.suffix.lower() != ".npz":
        raise DatasetError(f"dataset.path: {path} is not a .npz file (numpy.savez)")
    stat = os.stat(path)
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    with _lock:
        if key not in _cache:
            _cache.clear()  # one file version at a time
            try:
                with np.load(path, allow_pickle=False) as npz:
                    _cache[key] = {name: npz[name] for name in npz.files}
            except (OSError, ValueError) as err:
                raise DatasetError(f"dataset.path: cannot read {path}: {err}") from None
        return _cache[key]


def _array(arrays: dict, name: str, path: Path, role: str) -> np.ndarray:
    if name not in arrays:
        raise DatasetError(
            f"dataset.{role}: array {name!r} is not in {path}; it holds {sorted(arrays)}"
        )
    array = arrays[name]
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DatasetError(
            f"dataset.{role}: array {name!r} of {path} is {array.dtype}, not numeric"
        )
    return array


def _declared(task: str, declared) -> tuple[str, int | None]:
    if isinstance(declared, str):
        return declared, None
    return declared["type"], declared.get("classes")


def _class_ids(y: np.ndarray, task: str, path: Path, classes: int | None, kind: str):
    """Float class ids with NaN for missing (-1 or NaN), checked against ``classes``."""
    y = y.astype(np.float64)
    y[y == -1] = np.nan
    labelled = y[~np.isnan(y)]
    if labelled.size == 0:
        raise DatasetError(f"dataset.targets.{task}: array {task!r} of {path} has no labels")
    if not np.equal(np.mod(labelled, 1), 0).all() or labelled.min() < 0:
        raise DatasetError(
            f"dataset.targets.{task}: {kind} array {task!r} of {path} must hold integer class "
            "ids 0, 1, ... (-1 = missing)"
        )
    top = int(labelled.max())
    if classes is None:
        classes = top + 1
    elif top >= classes:
        raise DatasetError(
            f"dataset.targets.{task}: array {task!r} of {path} has class id {top}, but "
            f"classes is {classes}"
        )
    return y, int(classes)


def load_arrays(config: dict) -> Dataset:
    path = Path(config["path"]).expanduser()
    return dataset_from_arrays(
        _read(path), config["targets"], config.get("inputs", "x"),
        str(config.get("label", path.stem)), path,
        constant_features=config.get("constant_features", "drop"),
    )  # fmt: skip


def dataset_from_arrays(
    arrays: dict[str, np.ndarray],
    targets: dict,
    inputs_name: str,
    name: str,
    path: Path | str,
    constant_features: str | None = None,
) -> Dataset:
    """A Dataset of named arrays (the module docstring's layout): ``targets`` maps array name
    -> task type or {type, classes}; ``path`` names the source in errors. Shared by the
    ``arrays`` and ``scenes`` datasets. ``constant_features`` (drop | refuse; None: keep) for
    (N, features) inputs: images keep every pixel (a convolution needs the whole grid)."""
    x = _array(arrays, inputs_name, path, "inputs")
    if x.ndim not in (2, 4):
        raise DatasetError(
            f"dataset.inputs: array {inputs_name!r} of {path} has shape {x.shape}; expected "
            "(N, features) or (N, channels, H, W)"
        )
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DatasetError(f"dataset.inputs: array {inputs_name!r} of {path} has NaN or inf")
    kept, dropped = None, ()
    if constant_features is not None and x.ndim == 2:
        labels = [f"{inputs_name}[:, {i}]" for i in range(x.shape[1])]
        x, kept, dropped = drop_constant_features(x, labels, constant_features, str(path))
    n = x.shape[0]
    targets_cfg = dict(targets)
    if inputs_name in targets_cfg:
        raise DatasetError(f"dataset.targets: {inputs_name!r} is the inputs' array")
    columns, types, n_classes, dense = [], [], [], {}
    for task, declared in targets_cfg.items():
        kind, classes = _declared(task, declared)
        y = _array(arrays, task, path, f"targets.{task}")
        where = f"dataset.targets.{task}: array {task!r} of {path}"
        if y.shape[0] != n:
            raise DatasetError(f"{where} has {y.shape[0]} samples, the inputs {n}")
        if kind in DENSE_TYPES:
            if x.ndim != 4:
                raise DatasetError(
                    f"{where} is a {kind} task, which needs image inputs (N, C, H, W); "
                    f"{inputs_name!r} has shape {x.shape}"
                )
            if kind == "dense_regression" and y.ndim == 4 and y.shape[1] == 1:
                y = y[:, 0]
            expected = (n, 3, None, None) if kind == "normals" else (n, None, None)
            if y.ndim != len(expected) or (kind == "normals" and y.shape[1] != 3):
                shape = "(N, 3, H, W)" if kind == "normals" else "(N, H, W)"
                raise DatasetError(f"{where} has shape {y.shape}; a {kind} task needs {shape}")
            if kind == "segmentation":
                y, classes = _class_ids(y, task, path, classes, kind)
            else:
                y = y.astype(np.float64)
                if np.isinf(y).any():
                    raise DatasetError(f"{where} has inf values (NaN marks a missing pixel)")
            pixel_labelled = ~np.isnan(y)
            if kind == "normals":
                pixel_labelled = pixel_labelled.all(axis=1)
                y[~np.broadcast_to(pixel_labelled[:, None], y.shape)] = np.nan
            per_sample = pixel_labelled.reshape(n, -1).any(axis=1)
            if not per_sample.any():
                raise DatasetError(f"{where} has no labelled pixel")
            dense[task] = y.astype(np.float32)
            columns.append(np.where(per_sample, 1.0, np.nan))
            n_classes.append(classes if kind == "segmentation" else 0)
        else:
            if y.ndim != 1:
                raise DatasetError(f"{where} has shape {y.shape}; a {kind} task needs (N,)")
            if kind == "multiclass":
                y, classes = _class_ids(y, task, path, classes, kind)
                n_classes.append(classes)
            else:
                y = y.astype(np.float64)
                labelled = y[~np.isnan(y)]
                if labelled.size == 0:
                    raise DatasetError(f"{where} has no labels")
                if kind == "binary" and not np.isin(labelled, (0.0, 1.0)).all():
                    raise DatasetError(f"{where} has values not 0/1 (NaN = missing)")
                n_classes.append(2 if kind == "binary" else 0)
            columns.append(y)
        types.append(kind)
    return Dataset(
        name=name,
        features=x,
        targets=np.stack(columns, axis=1).astype(np.float32),
        task_names=tuple(targets_cfg),
        task_types=tuple(types),
        n_classes=tuple(n_classes),
        binary_features=bool(x.ndim == 2 and np.isin(x, (0.0, 1.0)).all()),
        dense_targets=dense,
        dropped_features=dropped,
        feature_indices=kept if dropped else None,
    )
