"""The datasets shipped inside the package: Tox21 (the default), ToxCast and yeast.

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


# Columns of the fingerprint files that are not tasks.
_NOT_TASKS = ("mol_id", "smiles", "ecfp4")


def _load_fingerprints(file: str, name: str, tasks: tuple[str, ...] | None = None) -> Dataset:
    """A packed-ECFP4 file (tox21.parquet layout): rows without a fingerprint dropped, labels
    int8 with nulls -> float32 with NaN. ``tasks``: the columns, else all but _NOT_TASKS."""
    with _data_file(file).open("rb") as fh:
        table = pq.read_table(fh)
    table = table.filter(table["ecfp4"].is_valid())
    packed = np.frombuffer(b"".join(table["ecfp4"].to_pylist()), np.uint8).reshape(-1, 128)
    features = np.unpackbits(packed, axis=1, bitorder="little").astype(np.float32)
    if tasks is None:
        tasks = tuple(c for c in table.column_names if c not in _NOT_TASKS)
    targets = np.empty((table.num_rows, len(tasks)), dtype=np.float32)
    for j, t in enumerate(tasks):
        # int8 with nulls comes back as float64 with NaN: exactly the missing-label encoding.
        targets[:, j] = table[t].to_numpy(zero_copy_only=False)
    return Dataset(
        name=name,
        features=features,
        targets=targets,
        task_names=tasks,
        task_types=("binary",) * len(tasks),
        n_classes=(2,) * len(tasks),
        binary_features=True,
    )


def load_tox21(config: dict) -> Dataset:
    """Tox21: ECFP4 (1024 bits) -> 12 binary toxicity assays, ~17% of labels missing.

    The 8 molecules RDKit could not fingerprint are dropped, as DeepChem and chemprop do.
    """
    return _load_fingerprints("tox21.parquet", "tox21", TOX21_TASKS)


def load_toxcast(config: dict) -> Dataset:
    """ToxCast (MoleculeNet): ECFP4 (1024 bits) -> 617 binary assay endpoints, 8,576 molecules,
    29% of labels present; task names as in the source (``ACEA_T47D_80hr_Negative``, ...)."""
    return _load_fingerprints("toxcast.parquet", "toxcast")


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
