"""Dataset registry: a name in ``config.dataset.name`` -> a loader returning a Dataset."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable

from .base import TASK_TYPES, Dataset, DatasetError
from .builtin import load_tox21, load_toxcast, load_yeast
from .synthetic import load_synthetic
from .table import load_table

LOADERS: dict[str, Callable[[dict], Dataset]] = {
    "tox21": load_tox21,
    "toxcast": load_toxcast,
    "yeast": load_yeast,
    "synthetic": load_synthetic,
    "table": load_table,
}

_cache: dict[str, Dataset] = {}
_lock = threading.Lock()


# Keys of ``config.dataset`` that select tasks rather than define the data.
TASK_SELECTION_KEYS = ("tasks", "exclude_tasks")


def loader_config(dataset_config: dict) -> dict:
    """The part of ``config.dataset`` that determines the data: everything but the task
    selection, so adding a task to a sweep does not change any existing network's params."""
    return {k: v for k, v in dataset_config.items() if k not in TASK_SELECTION_KEYS}


def load_dataset(dataset_config: dict) -> Dataset:
    """Load (once per process: Snakemake threads and Dask workers reuse it) a dataset."""
    cfg = loader_config(dataset_config)
    name = cfg.get("name")
    if name not in LOADERS:
        raise DatasetError(f"dataset.name: unknown dataset {name!r}; known: {sorted(LOADERS)}")
    key = json.dumps(cfg, sort_keys=True)
    if name == "table" and os.path.exists(cfg.get("path", "")):
        stat = os.stat(cfg["path"])  # a rewritten table is new data, not a cache hit
        key += f"|{stat.st_mtime_ns}|{stat.st_size}"
    with _lock:
        if key not in _cache:
            _cache[key] = LOADERS[name](cfg)
        return _cache[key]


__all__ = ["Dataset", "DatasetError", "LOADERS", "TASK_TYPES", "load_dataset", "loader_config"]
