"""The one loader interface every dataset implements."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

TASK_TYPES = ("binary", "multiclass", "regression")
# Task names become file names and Snakemake wildcards ("A+B" names a network).
TASK_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


class DatasetError(ValueError):
    """A dataset cannot be used as configured; the message names the file, column or task."""


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

    def __post_init__(self) -> None:
        rows, tasks = self.targets.shape
        if self.features.shape[0] != rows:
            raise DatasetError(
                f"{self.name}: {self.features.shape[0]} feature rows but {rows} target rows"
            )
        if not (len(self.task_names) == len(self.task_types) == len(self.n_classes) == tasks):
            raise DatasetError(f"{self.name}: task names/types/classes do not match {tasks} tasks")
        for name, kind in zip(self.task_names, self.task_types):
            if kind not in TASK_TYPES:
                raise DatasetError(f"{self.name}: task {name!r} has unknown type {kind!r}")
            if not TASK_NAME.match(name):
                raise DatasetError(
                    f"{self.name}: task name {name!r} may only use letters, digits, '_', '.', '-'"
                )

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
