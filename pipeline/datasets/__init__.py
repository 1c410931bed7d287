"""Dataset registry: a name in ``config.dataset.name`` -> a loader returning a Dataset."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable

import numpy as np

from .arrays import load_arrays
from .base import DENSE_TYPES, TASK_TYPES, Dataset, DatasetError
from .builtin import load_tox21, load_toxcast, load_yeast
from .scenes_dataset import load_scenes
from .synthetic import load_synthetic
from .table import load_table

LOADERS: dict[str, Callable[[dict], Dataset]] = {
    "tox21": load_tox21,
    "toxcast": load_toxcast,
    "yeast": load_yeast,
    "synthetic": load_synthetic,
    "table": load_table,
    "arrays": load_arrays,
    "scenes": load_scenes,
}

# Datasets read from a user's file: a network's spec carries content hashes of what it reads,
# the split depends on the row count only.
FILE_DATASETS = ("table", "arrays")

_cache: dict[str, Dataset] = {}
_lock = threading.Lock()


# Keys of ``config.dataset`` that select tasks rather than define the data.
TASK_SELECTION_KEYS = ("tasks", "exclude_tasks")


def loader_config(dataset_config: dict) -> dict:
    """The part of ``config.dataset`` that determines the data: everything but the task
    selection, so adding a task to a sweep does not change any existing network's params."""
    return {k: v for k, v in dataset_config.items() if k not in TASK_SELECTION_KEYS}


# Keys a table dataset's training spec carries besides the loader's own: content hashes, so an
# edit of the data file retrains exactly the networks it feeds.
CONTENT_KEY = "content"


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def network_dataset(dataset_config: dict, tasks: tuple[str, ...] | list[str]) -> dict:
    """The dataset part of one network's training spec.

    Built-in and synthetic datasets: :func:`loader_config` (unchanged from earlier releases, so
    their results never retrain). A ``table``: the loader config with ``targets`` reduced to the
    network's own tasks, plus ``content``: the row count and hashes of the feature matrix and
    of each of those target columns. Adding a column to the file or to ``targets`` leaves every
    other network's spec alone; editing a label retrains the networks with that task; editing
    features or rows retrains every network.
    An ``arrays`` file likewise: ``features`` hashes the inputs array, each target's hash
    covers its per-pixel labels for a dense task."""
    cfg = loader_config(dataset_config)
    if cfg.get("name") == "scenes":
        from .scenes import GENERATOR_VERSION

        # The rendering is the data: a renderer change that alters values retrains.
        return {**cfg, "generator_version": GENERATOR_VERSION}
    if cfg.get("name") not in FILE_DATASETS:
        return cfg
    data = load_dataset(dataset_config)
    # What it does to the inputs is in the features' hash: drop given or left out, one spec.
    cfg.pop("constant_features", None)
    own = {t: cfg["targets"][t] for t in tasks}
    cfg["targets"] = own
    hashes = _content_hashes(data)
    cfg[CONTENT_KEY] = {
        "rows": data.n_rows,
        "features": hashes["features"],
        "targets": {t: hashes["targets"][t] for t in own},
    }
    return cfg


_hash_cache: dict[int, dict] = {}


def _content_hashes(data: Dataset) -> dict:
    with _lock:
        cached = _hash_cache.get(id(data))
        if cached is not None and cached["data"] is data:
            return cached
    hashes = {
        "data": data,
        "features": _digest(data.features),
        "targets": {
            t: _digest(data.targets[:, j])
            + ("|" + _digest(data.dense_targets[t]) if t in data.dense_targets else "")
            + (
                "|" + json.dumps(data.class_labels[t], ensure_ascii=False)
                if t in data.class_labels
                else ""
            )
            for j, t in enumerate(data.task_names)
        },
    }
    with _lock:
        _hash_cache[id(data)] = hashes
    return hashes


def split_params(dataset_config: dict) -> dict:
    """What the split depends on (the ``split`` rule's params, besides ``split.*``): the split
    is a seeded permutation of the rows, so for a ``table`` only the row count; target columns
    and task selection never reshuffle it. Other datasets: :func:`loader_config` (unchanged)."""
    cfg = loader_config(dataset_config)
    if cfg.get("name") not in FILE_DATASETS:
        return cfg
    return {"name": cfg["name"], "rows": load_dataset(dataset_config).n_rows}


def split_rows(params_dataset: dict) -> int:
    """The row count of :func:`split_params`' output (loads the data for non-table datasets)."""
    if params_dataset.get("name") in FILE_DATASETS:
        return int(params_dataset["rows"])
    return load_dataset(params_dataset).n_rows


def load_dataset(dataset_config: dict) -> Dataset:
    """Load (once per process: Snakemake threads and Dask workers reuse it) a dataset."""
    cfg = loader_config(dataset_config)
    cfg.pop(CONTENT_KEY, None)
    cfg.pop("generator_version", None)  # scenes: added to network specs, not loader config
    name = cfg.get("name")
    if name not in LOADERS:
        raise DatasetError(f"dataset.name: unknown dataset {name!r}; known: {sorted(LOADERS)}")
    key = json.dumps(cfg, sort_keys=True)
    if name in FILE_DATASETS and os.path.exists(cfg.get("path", "")):
        stat = os.stat(cfg["path"])  # a rewritten table is new data, not a cache hit
        key += f"|{stat.st_mtime_ns}|{stat.st_size}"
    with _lock:
        if key not in _cache:
            _cache[key] = LOADERS[name](cfg)
        return _cache[key]


__all__ = [
    "DENSE_TYPES", "Dataset", "DatasetError", "LOADERS", "TASK_TYPES", "load_dataset",
    "loader_config", "network_dataset", "split_params", "split_rows",
]  # fmt: skip
