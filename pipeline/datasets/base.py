"""The one loader interface every dataset implements."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

import numpy as np

TASK_TYPES = ("binary", "multiclass", "regression")


class DatasetError(ValueError):
    """A dataset cannot be used as configured; the message names the file, column or task."""


def _normalised(name: str) -> str:
    return unicodedata.normalize("NFC", name).strip()


def check_task_names(names: tuple[str, ...] | list[str], where: str) -> None:
    """Any non-empty string is a task name (file names never contain it verbatim: see
    pipeline/sweep.py). Refused: empty names, and two names that differ only in Unicode
    normalisation or surrounding whitespace, which look identical in every table and config."""
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise DatasetError(f"{where}: task name {name!r} is empty")
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
    """Features, one target column per task, and the mask of labelled cells.

    ``targets`` holds NaN where a label is missing; losses and metrics skip those cells
    rather than dropping the row (other tasks still learn from it) or imputing a label.
    Multiclass targets hold the class index as a float.
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

    def output_dim(self, task: str) -> int:
        i = self.task_index(task)
        return self.n_classes[i] if self.task_types[i] == "multiclass" else 1
