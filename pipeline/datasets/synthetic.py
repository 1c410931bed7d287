"""Synthetic tasks with planted relations, whose true grouping is known.

In the spirit of the MMoE paper's synthetic data (Ma et al., KDD 2018): tasks are drawn from a
few latent clusters. Each cluster has a unit weight vector; each task's vector is
``similarity * cluster + sqrt(1 - similarity^2) * own`` (so within-cluster tasks have cosine
similarity ~ similarity^2, across clusters ~ 0). Targets add a shared non-linearity (sums of
sines, as in MMoE) and Gaussian noise. Binary tasks threshold the regression target at its median.
"""

from __future__ import annotations

import numpy as np

from .base import Dataset


def load_synthetic(config: dict) -> Dataset:
    rows = int(config.get("rows", 2000))
    n_features = int(config.get("features", 32))
    clusters = int(config.get("clusters", 2))
    per_cluster = int(config.get("tasks_per_cluster", 2))
    similarity = float(config.get("similarity", 0.9))
    noise = float(config.get("noise", 0.1))
    task_type = str(config.get("task_type", "regression"))
    missing = float(config.get("missing_fraction", 0.0))
    rng = np.random.default_rng(int(config.get("seed", 0)))

    def unit(n: int) -> np.ndarray:
        v = rng.standard_normal((n, n_features))
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    centres = unit(clusters)
    x = rng.standard_normal((rows, n_features)).astype(np.float32)
    names, groups, columns = [], {}, []
    for c in range(clusters):
        own = unit(per_cluster)
        for k in range(per_cluster):
            w = similarity * centres[c] + np.sqrt(1.0 - similarity**2) * own[k]
            z = x @ w
            y = z + np.sin(z) + noise * rng.standard_normal(rows)
            if task_type == "binary":
                y = (y > np.median(y)).astype(np.float64)
            name = f"c{c}t{k}"
            names.append(name)
            groups[name] = c
            columns.append(y)
    targets = np.stack(columns, axis=1).astype(np.float32)
    if missing > 0:
        targets[rng.random(targets.shape) < missing] = np.nan
    return Dataset(
        name="synthetic",
        features=x,
        targets=targets,
        task_names=tuple(names),
        task_types=(task_type,) * len(names),
        n_classes=(2 if task_type == "binary" else 0,) * len(names),
        true_groups=groups,
    )
