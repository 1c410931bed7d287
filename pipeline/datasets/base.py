"""The one loader interface every dataset implements."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

import numpy as np

# Vector tasks: one label per sample, a column of ``Dataset.targets``.
VECTOR_TYPES = ("binary", "multiclass", "regression")
# Dense tasks: one label per pixel, an array of ``Dataset.dense_targets`` (images only).
DENSE_TYPES = ("segmentation", "dense_regression", "normals")
TASK_TYPES = VECTOR_TYPES + DENSE_TYPES


class DatasetError(ValueError):
    """A dataset cannot be used as configured; the message names the file, column or task."""


def abbreviate(names, limit: int = 10) -> str:
    """``names`` as a readable list, past ``limit`` its first ones, the count left out and the
    last: a message about 617 tasks or 2,048 pixels stays one line."""
    names = list(names)
    if len(names) <= limit:
        return ", ".join(map(repr, names))
    head = ", ".join(map(repr, names[: limit - 1]))
    return f"{head}, ... ({len(names) - limit} more), {names[-1]!r}"


# dataset.constant_features of your own tables and (N, features) arrays.
CONSTANT_FEATURES = ("drop", "refuse")


def drop_constant_features(
    features: np.ndarray, names: list[str], policy: str, where: str
) -> tuple[np.ndarray, tuple[int, ...], tuple[str, ...]]:
    """``features`` (rows, columns) without the columns that hold one value in every row of
    the file, the kept columns' positions and the dropped columns' names. Constant over the
    whole file, not the training rows: what is kept is a property of the data, the same for
    every split, seed and predict input. ``policy`` "refuse" raises DatasetError naming them."""
    if policy not in CONSTANT_FEATURES:
        raise DatasetError(f"dataset.constant_features: {policy!r}; known: {CONSTANT_FEATURES}")
    constant = (features == features[:1]).all(axis=0)
    dropped = tuple(name for name, c in zip(names, constant) if c)
    if dropped and (policy == "refuse" or constant.all()):
        why = (
            "every feature column is constant"
            if constant.all()
            else "dataset.constant_features: refuse; drop (the default) drops them"
        )
        raise DatasetError(
            f"dataset.features: {len(dropped)} constant column(s) of {where} (one value in "
            f"every row, no signal): {abbreviate(dropped)} ({why})"
        )
    kept = tuple(int(i) for i in np.flatnonzero(~constant))
    return (features[:, list(kept)] if dropped else features), kept, dropped


# Unicode categories no task name may contain: control characters (newline, tab, NUL, ...),
# surrogates and line/paragraph separators. A name is one line of every log, summary, CSV
# cell and terminal table; NUL and lone surrogates cannot even be written to most of them.
NEVER_IN_A_TASK_NAME = ("Cc", "Cs", "Zl", "Zp")


def _normalised(name: str) -> str:
    return unicodedata.normalize("NFC", name).strip()


def check_task_names(names: tuple[str, ...] | list[str], where: str) -> None:
    """Any non-empty string is a task name (file names never contain it verbatim: see
    pipeline/sweep.py). Refused: empty names, and two names that differ only in Unicode
    normalisation or surrounding whitespace, which look identical in every table and config,
    and names with a character of :data:`NEVER_IN_A_TASK_NAME` (a newline, a tab, NUL...)."""
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise DatasetError(f"{where}: task name {name!r} is empty")
        bad = sorted({c for c in name if unicodedata.category(c) in NEVER_IN_A_TASK_NAME})
        if bad:
            raise DatasetError(
                f"{where}: task name {name!r} contains {', '.join(map(repr, bad))}: control "
                "characters and line breaks cannot be part of a task name; rename the column"
            )
        key = _normalised(name)
        if key not in seen:
            seen[key] = name
            continue
        other = seen[key]
        if other == name:
            raise DatasetError(f"{where}: task name {name!r} appears twice")
        raise DatasetError(
            f"{where}: task names {other!r} and {name!r} differ only in Unicode "
            "normalisation or surrounding whitespace; rename one"
        )


@dataclass(frozen=True)
class Dataset:
    """Inputs, one target column per task, and the mask of labelled cells.

    ``features`` is a table (rows, features) or a batch of images (rows, channels, H, W).
    ``targets`` holds NaN where a label is missing; losses and metrics skip those cells
    rather than dropping the row (other tasks still learn from it) or imputing a label.
    Multiclass targets hold the class index as a float.

    Dense tasks (:data:`DENSE_TYPES`, images only) keep their per-pixel labels in
    ``dense_targets[task]``, float32 with NaN for a missing pixel: segmentation (rows, H, W)
    class ids, dense_regression (rows, H, W) values, normals (rows, 3, H, W) vectors (a pixel
    with any NaN component is missing). Their column of ``targets`` is 1.0 for a sample with
    at least one labelled pixel and NaN for one without, so everything that counts labelled
    samples per split (split checks, ``n_labelled``) treats every task alike.
    """

    name: str
    features: np.ndarray  # (rows, features) float32
    targets: np.ndarray  # (rows, tasks) float32, NaN = missing
    task_names: tuple[str, ...]
    task_types: tuple[str, ...]
    n_classes: tuple[int, ...]  # classes for multiclass, 2 for binary, 0 for regression
    # All features are 0/1: the trunk may compute its first layer sparsely (same maths).
    binary_features: bool = False
    # Planted structure (synthetic data): task -> cluster id, for tests of the solve.
    true_groups: dict[str, int] = field(default_factory=dict)
    # Multiclass tasks whose labels were mapped to class ids: task -> label of id 0, 1, ...
    class_labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Dense tasks' per-pixel labels (see above); empty for tables.
    dense_targets: dict[str, np.ndarray] = field(default_factory=dict)
    # Your own table or (N, features) arrays: the constant input columns dropped from
    # ``features`` (dataset.constant_features), by name (a table's columns; an array's
    # "inputs[:, i]"), and the positions kept: the one place that says which source columns the
    # model reads (select_features). None: all of them.
    dropped_features: tuple[str, ...] = ()
    feature_indices: tuple[int, ...] | None = None
    # A table's kept feature columns by name, in model input order; empty for other datasets.
    feature_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        rows, tasks = self.targets.shape
        if self.features.shape[0] != rows:
            raise DatasetError(
                f"{self.name}: {self.features.shape[0]} feature rows but {rows} target rows"
            )
        if not (len(self.task_names) == len(self.task_types) == len(self.n_classes) == tasks):
            raise DatasetError(f"{self.name}: task names/types/classes do not match {tasks} tasks")
        check_task_names(self.task_names, self.name)
        for name, kind in zip(self.task_names, self.task_types):
            if kind not in TASK_TYPES:
                raise DatasetError(f"{self.name}: task {name!r} has unknown type {kind!r}")
            if (kind in DENSE_TYPES) != (name in self.dense_targets):
                raise DatasetError(
                    f"{self.name}: task {name!r} of type {kind!r} "
                    + ("has no per-pixel labels" if kind in DENSE_TYPES else "is not dense")
                )
        if self.dense_targets and self.features.ndim != 4:
            raise DatasetError(
                f"{self.name}: dense tasks need image inputs (rows, channels, H, W), "
                f"not inputs of shape {self.features.shape}"
            )
        sizes = {labels.shape[-2:] for labels in self.dense_targets.values()}
        if len(sizes) > 1:
            raise DatasetError(f"{self.name}: dense tasks have different label sizes {sizes}")

    def select_features(self, source: np.ndarray) -> np.ndarray:
        """``source`` inputs laid out like the data file's (a table's configured feature
        columns in order, an arrays file's inputs array) as the model reads them: the
        constant columns dropped at training dropped here too (export / predict)."""
        if self.feature_indices is None:
            return source
        return source[:, list(self.feature_indices)]

    @property
    def mask(self) -> np.ndarray:
        return ~np.isnan(self.targets)

    @property
    def n_rows(self) -> int:
        return int(self.targets.shape[0])

    def task_index(self, task: str) -> int:
        try:
            return self.task_names.index(task)
        except ValueError:
            raise DatasetError(
                f"{self.name}: unknown task {task!r}; known tasks: {', '.join(self.task_names)}"
            ) from None

    @property
    def label_size(self) -> tuple[int, int] | None:
        """(H, W) of the dense tasks' labels; None without dense tasks."""
        for labels in self.dense_targets.values():
            return (int(labels.shape[-2]), int(labels.shape[-1]))
        return None

    def is_dense(self, task: str) -> bool:
        return self.task_types[self.task_index(task)] in DENSE_TYPES

    def output_dim(self, task: str) -> int:
        """Outputs (channels, for a dense task) of the task's head."""
        i = self.task_index(task)
        kind = self.task_types[i]
        if kind in ("multiclass", "segmentation"):
            return self.n_classes[i]
        return 3 if kind == "normals" else 1
