"""The datasets shipped inside the package: Tox21 (the default) and yeast.

Both are copied compactly into ``pipeline/datasets/data/`` (see the README there for provenance
and licences), so a fresh clone needs nothing else.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pyarrow.parquet as pq

from .base import Dataset

TOX21_TASKS = (
    "NR-AR", "NR-AR-LBD", "NR-AhR", "NR-Aromatase", "NR-ER", "NR-ER-LBD", "NR-PPAR-gamma",
    "SR-ARE", "SR-ATAD5", "SR-HSE", "SR-MMP", "SR-p53",
)  # fmt: skip


def _data_file(name: str):
    return resources.files("pipeline.datasets").joinpath("data", name)


def load_tox21(config: dict) -> Dataset:
    """Tox21: ECFP4 (1024 bits) -> 12 binary toxicity assays, ~17% of labels missing.

    The 8 molecules RDKit could not fingerprint are dropped, as DeepChem and chemprop do.
    """
    with _data_file("tox21.parquet").open("rb") as fh:
        table = pq.read_table(fh)
    table = table.filter(table["ecfp4"].is_valid())
    packed = np.frombuffer(b"".join(table["ecfp4"].to_pylist()), np.uint8).reshape(-1, 128)
    features = np.unpackbits(packed, axis=1, bitorder="little").astype(np.float32)
    targets = np.stack(
        [table[t].to_numpy(zero_copy_only=False).astype(np.float32) for t in TOX21_TASKS], axis=1
    )
    return Dataset(
        name="tox21",
        features=features,
        targets=targets,
        task_names=TOX21_TASKS,
        task_types=("binary",) * len(TOX21_TASKS),
        n_classes=(2,) * len(TOX21_TASKS),
        binary_features=True,
    )


def load_yeast(config: dict) -> Dataset:
    """Yeast (Elisseeff & Weston 2001): 103 expression features -> 14 functional classes."""
    with _data_file("yeast.parquet").open("rb") as fh:
        table = pq.read_table(fh)
    feature_cols = [f"f{i}" for i in range(103)]
    task_cols = tuple(f"y{j}" for j in range(14))
    features = np.stack([table[c].to_numpy() for c in feature_cols], axis=1).astype(np.float32)
    targets = np.stack([table[c].to_numpy() for c in task_cols], axis=1).astype(np.float32)
    return Dataset(
        name="yeast",
        features=features,
        targets=targets,
        task_names=task_cols,
        task_types=("binary",) * len(task_cols),
        n_classes=(2,) * len(task_cols),
    )
