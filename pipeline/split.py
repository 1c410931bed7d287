"""One deterministic train/val/test split per dataset, written once and read by every network."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .datasets import Dataset, DatasetError
from .schema import SPLITS, write_table

SPLIT = pa.schema(
    [pa.field("row", pa.int64(), nullable=False), pa.field("split", pa.string(), nullable=False)],
    metadata={"taskgroup.table": "split"},
)

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


def check_split(data: Dataset, labels: np.ndarray, tasks: list[str]) -> None:
    """Every task needs labels, and binary tasks both classes, in every split."""
    for task in tasks:
        i = data.task_index(task)
        for split in SPLITS:
            y = data.targets[labels == split, i]
            y = y[~np.isnan(y)]
            if y.size == 0:
                raise DatasetError(f"task {task!r} has no labels in the {split} split")
            if data.task_types[i] == "binary" and np.unique(y).size < 2:
                raise DatasetError(
                    f"task {task!r} has only one class in the {split} split "
                    f"({y.size} labels); use another split seed or larger fractions"
                )


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
    """The ``split`` rule's body."""
    from .datasets import load_dataset

    data = load_dataset(dataset_config)
    labels = make_split(data.n_rows, split_config["fractions"], split_config["seed"])
    write_split(labels, path)
    with open(log, "w") as fh:
        counts = {s: int((labels == s).sum()) for s in SPLITS}
        print(
            f"{data.name}: {data.n_rows} rows split {counts} (seed {split_config['seed']})", file=fh
        )
