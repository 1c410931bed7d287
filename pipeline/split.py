"""One deterministic train/val/test split per dataset, written once and read by every network."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .datasets import Dataset, DatasetError
from .schema import SPLIT, SPLITS, write_table

# Below this many rows per split a loss or ROC-AUC is mostly noise.
MIN_ROWS_PER_SPLIT = 10


def make_split(n_rows: int, fractions: dict[str, float], seed: int) -> np.ndarray:
    """An array of "train"/"val"/"test" labels, one per row, from a seeded permutation."""
    total = sum(fractions[s] for s in SPLITS)
    if abs(total - 1.0) > 1e-6:
        raise DatasetError(f"split.fractions: must sum to 1, got {total}")
    counts = {s: int(round(fractions[s] * n_rows)) for s in ("val", "test")}
    counts["train"] = n_rows - counts["val"] - counts["test"]
    small = {s: c for s, c in counts.items() if c < MIN_ROWS_PER_SPLIT}
    if small:
        raise DatasetError(
            f"split.fractions: {n_rows} rows give too few rows per split {small} "
            f"(need at least {MIN_ROWS_PER_SPLIT} each)"
        )
    order = np.random.default_rng(seed).permutation(n_rows)
    labels = np.empty(n_rows, dtype=object)
    labels[order[: counts["train"]]] = "train"
    labels[order[counts["train"] : counts["train"] + counts["val"]]] = "val"
    labels[order[counts["train"] + counts["val"] :]] = "test"
    return labels


def check_split(data: Dataset, labels: np.ndarray, tasks: list[str]) -> list[str]:
    """Refuse what cannot train; return warnings for what only cannot be scored.

    Errors (DatasetError, all offending tasks named at once, with counts): a task with no
    labels in some split, or a classification task with a single class in the train split.
    Warnings (returned, one line per task and split): a binary task with a single class in the
    val or test split: its loss is defined there (the grouping solve uses losses) but its
    ROC-AUC is NaN. One vectorised pass per split: fast at 600+ tasks."""
    index = {name: i for i, name in enumerate(data.task_names)}
    cols = np.array([index[t] if t in index else data.task_index(t) for t in tasks], dtype=int)
    binary = np.array([data.task_types[c] == "binary" for c in cols], dtype=bool)
    multiclass = np.array([data.task_types[c] == "multiclass" for c in cols], dtype=bool)
    problems: list[str] = []
    warnings: list[str] = []
    offending: dict[str, None] = {}  # ordered set
    for split in SPLITS:
        y = data.targets[labels == split][:, cols]
        labelled = ~np.isnan(y)
        n = labelled.sum(axis=0)
        positives = (labelled & (y == 1)).sum(axis=0)
        for j in np.flatnonzero(n == 0):
            offending[tasks[j]] = None
            problems.append(f"task {tasks[j]!r} has no labels in the {split} split")
        one_class = binary & (n > 0) & ((positives == 0) | (positives == n))
        if split == "train":
            for j in np.flatnonzero(multiclass & (n > 0)):
                if np.unique(y[labelled[:, j], j]).size < 2:
                    one_class[j] = True
        for j in np.flatnonzero(one_class):
            line = (
                f"task {tasks[j]!r} has only one class in the {split} split "
                f"({n[j]} labels, {positives[j]} positive)"
            )
            if split == "train":
                offending[tasks[j]] = None
                problems.append(line)
            else:
                warnings.append(f"{line}: its {split} ROC-AUC is NaN, its loss is kept")
    if problems:
        if len(problems) == 1:
            raise DatasetError(
                f"{problems[0]}; use another split seed, larger fractions or leave the "
                "task out (dataset.exclude_tasks)"
            )
        # JSON is valid YAML: the line can be pasted into config.yaml as it is.
        raise DatasetError(
            f"{len(problems)} task/split problems in {len(offending)} tasks; use another split "
            "seed, larger fractions or leave them out with\n  dataset.exclude_tasks: "
            f"{json.dumps(list(offending), ensure_ascii=False)}\n    " + "\n    ".join(problems)
        )
    return warnings


def write_split(labels: np.ndarray, path: str) -> None:
    table = pa.table({"row": np.arange(labels.size, dtype=np.int64), "split": labels.astype(str)})
    write_table(table, path, SPLIT)


def read_split(path: str, n_rows: int) -> np.ndarray:
    table = pq.read_table(path)
    labels = np.asarray(table["split"].to_pylist(), dtype=object)
    if labels.size != n_rows:
        raise DatasetError(f"{path}: split has {labels.size} rows but the dataset has {n_rows}")
    return labels


def write_split_for(dataset_config: dict, split_config: dict, path: str, log: str) -> None:
    """The ``split`` rule's body. ``dataset_config``: :func:`pipeline.datasets.split_params`."""
    from .datasets import split_rows

    n_rows = split_rows(dataset_config)
    labels = make_split(n_rows, split_config["fractions"], split_config["seed"])
    write_split(labels, path)
    with open(log, "w") as fh:
        counts = {s: int((labels == s).sum()) for s in SPLITS}
        name = dataset_config.get("name")
        print(f"{name}: {n_rows} rows split {counts} (seed {split_config['seed']})", file=fh)
