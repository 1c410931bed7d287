"""The task x task picture of a strategy's estimate (and of the measured pair gains where pairs
were trained), ordered by the decided grouping with its groups outlined
(results/estimate_matrix.png, in the Snakemake report). Legible at 617 tasks: one pixel-sized
cell per pair, no per-task labels past MAX_LABELLED tasks, a robust colour scale."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

# Task names on the axes up to this many tasks; past it the order is explained in the title.
MAX_LABELLED = 40


def grouping_order(
    tasks: Sequence[str], groupings: Sequence[dict] | None, fallback: np.ndarray | None
) -> tuple[list[int], list[tuple[int, int]]]:
    """Task positions in display order and the (start, stop) blocks to outline: the decided
    grouping with the most groups (each task in its serving group, larger groups first), or
    without one a hierarchical clustering of ``fallback`` (average linkage on the symmetrised
    matrix), or the dataset order."""
    n = len(tasks)
    if groupings:
        finest = max(groupings, key=lambda g: (g.get("n_groups_used", 0), g.get("max_groups", 0)))
        serving = finest.get("serving_group") or {}
        if serving:
            label = np.array([int(serving.get(t, -1)) for t in tasks])
            sizes = {g: int((label == g).sum()) for g in set(label.tolist())}
            groups = sorted(sizes, key=lambda g: (-sizes[g], g))
            order, blocks = [], []
            for g in groups:
                members = [i for i in range(n) if label[i] == g]
                blocks.append((len(order), len(order) + len(members)))
                order += members
            return order, blocks
    if fallback is not None and n > 2 and np.isfinite(fallback).any():
        from scipy.cluster.hierarchy import leaves_list, linkage
        from scipy.spatial.distance import squareform

        sym = np.nan_to_num((fallback + fallback.T) / 2.0, nan=0.0)
        distance = sym.max() - sym
        np.fill_diagonal(distance, 0.0)
        return leaves_list(linkage(squareform(distance, checks=False), "average")).tolist(), []
    return list(range(n)), []


def plot_matrices(
    panels: Sequence[tuple[str, np.ndarray, str]],
    tasks: Sequence[str],
    order: Sequence[int],
    blocks: Sequence[tuple[int, int]],
    path: str | os.PathLike,
    title: str,
) -> None:
    """One heat map per (title, matrix[source, target], unit) in ``order``, blocks outlined;
    written atomically. Matrices are in readable units already."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from ..io import save_figure

    n = len(tasks)
    order = list(order)
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(6.6 * max(1, len(panels)), 6.0),
                             squeeze=False)  # fmt: skip
    for ax, (name, matrix, unit) in zip(axes[0], panels):
        shown = np.array(matrix, dtype=float)[np.ix_(order, order)]
        np.fill_diagonal(shown, np.nan)
        finite = np.abs(shown[np.isfinite(shown)])
        # The 99th percentile, so a few extreme pairs do not wash out the rest.
        limit = float(np.percentile(finite, 99)) if finite.size else 1.0
        cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="0.85")
        image = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, vmin=-limit or -1,
                          vmax=limit or 1, interpolation="nearest")  # fmt: skip
        width = 1.2 if n <= MAX_LABELLED else 0.6
        for start, stop in blocks:
            ax.add_patch(Rectangle((start - 0.5, start - 0.5), stop - start, stop - start,
                                   fill=False, edgecolor="black", linewidth=width))  # fmt: skip
        if n <= MAX_LABELLED:
            labels = [tasks[i] for i in order]
            ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
            ax.set_yticks(range(n), labels, fontsize=7)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_xlabel("target task (helped)")
        ax.set_ylabel("source task (helping)")
        ax.set_title(name, fontsize=10)
        bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        bar.set_label(unit)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def pair_gain_matrix(gains, architecture: str, weighting: str, tasks: Sequence[str]):
    """Measured gain (%) of target j in the trained pair {i, j} over j's full single-task
    network, on validation; NaN where the pair was not trained. None without any pair."""
    mine = gains[
        (gains["architecture"] == architecture)
        & (gains["weighting"] == weighting)
        & (gains["split"] == "val")
        & (gains["tasks"].map(len) == 2)
    ]
    if mine.empty:
        return None
    position = {t: i for i, t in enumerate(tasks)}
    matrix = np.full((len(tasks), len(tasks)), np.nan)
    for row in mine.itertuples():
        source = row.tasks[0] if row.tasks[1] == row.task else row.tasks[1]
        if source in position and row.task in position:
            matrix[position[source], position[row.task]] = 100.0 * row.gain
    return matrix
