"""``sampled``: singles and ``sweep.sampled.subsets`` networks on random subsets of
``sweep.sampled.size`` tasks; their losses give the higher-order affinity, and the groups
selected on it are then trained (Li, Ju, Sharma & Zhang, "Identification of Negative Transfers
in Multitask Learning Using Surrogate Models", KDD 2023 / TMLR; ``pipeline/affinity/
higher_order.py``)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from .base import Strategy
from .groups import groups_from_affinity


def default_subsets(n_tasks: int, size: int) -> int:
    """Twice the fewest subsets of ``size`` tasks that can hold every pair (each pair is then
    seen about twice), and at least one subset per task."""
    pairs = n_tasks * (n_tasks - 1) // 2
    per_subset = size * (size - 1) // 2
    return max(n_tasks, 2 * -(-pairs // per_subset))


def sampled_subsets(tasks: list[str], sweep: dict) -> list[tuple[str, ...]]:
    """The sampled strategy's task subsets, in dataset order, drawn deterministically."""
    from ..affinity import sample_subsets

    options = sweep.get("sampled", {})
    size = int(options.get("size", 4))
    if size > len(tasks):
        raise ValueError(
            f"config key sweep.sampled.size: {size} tasks per subset, but only {len(tasks)} tasks"
        )
    m = options.get("subsets") or default_subsets(len(tasks), size)
    try:
        drawn = sample_subsets(
            tasks, size, int(m), seed=int(options.get("seed", 0)),
            cover_pairs=bool(options.get("cover_pairs", True)),
        )  # fmt: skip
    except ValueError as err:
        raise ValueError(f"config key sweep.sampled.subsets: {err}") from None
    return list(dict.fromkeys(drawn))


def subset_losses(metrics_files: Sequence[str], tasks: Sequence[str]) -> pd.DataFrame:
    """Per subset network x member: its final-epoch validation loss, mean over seeds (the
    input of the higher-order affinity). Networks of every task or of one are not subsets."""
    frames = []
    for path in metrics_files:
        table = pq.read_table(
            path, columns=["tasks", "n_tasks", "seed", "task", "split", "metric", "epoch",
                           "value", "status"],
        ).to_pandas()  # fmt: skip
        if table.empty or not 1 < table["n_tasks"].iloc[0] < len(tasks):
            continue
        if (table["status"] != "ok").any():
            continue  # a diverged subset network says nothing about its tasks
        final = table[(table["split"] == "val") & (table["metric"] == "loss")]
        final = final[final["epoch"] == final["epoch"].max()]
        frames.append(final.assign(subset="+".join(map(json.dumps, table["tasks"].iloc[0]))))
    if not frames:
        raise ValueError("sampled: no subset network finished without diverging")
    frame = pd.concat(frames, ignore_index=True)
    return (
        frame.groupby(["subset", "task"], as_index=False)["value"]
        .mean()
        .rename(columns={"value": "loss"})
    )


def sampled_affinity(metrics_files: Sequence[str], tasks: Sequence[str]):
    """Li et al.'s higher-order affinity from the subset networks' validation losses (each
    target's losses divided by its mean, so every task weighs the same); pairs never sampled
    together (sweep.sampled.cover_pairs false) get the target's mean affinity."""
    from ..affinity import Affinity, higher_order_affinity

    losses = subset_losses(metrics_files, tasks)
    affinity = higher_order_affinity(losses, tasks, normalise=True, require_all_pairs=False)
    matrix = affinity.matrix.copy()
    target_mean = np.nanmean(np.where(np.eye(len(tasks), dtype=bool), np.nan, matrix), axis=0)
    missing = np.isnan(matrix)
    matrix[missing] = np.broadcast_to(target_mean, matrix.shape)[missing]
    return Affinity(tuple(tasks), matrix)


def sampled_groups(metrics_files: Sequence[str], tasks: Sequence[str], budgets) -> dict:
    """The groups selected on the sampled affinity for the budgets (bench/ calls this)."""
    return groups_from_affinity(sampled_affinity(metrics_files, tasks), budgets)


class Sampled(Strategy):
    name = "sampled"
    estimates = True
    estimate_description = (
        "how far below its mean over all sampled subsets each member's validation loss is in "
        "the subsets it shares with the other members (1 - normalised loss; higher is better)"
    )
    estimate_unit = "% below the member's mean subset loss"

    def readable(self, value: float) -> float:
        # The raw estimate is minus the mean normalised loss (each task's mean is 1).
        return 100.0 * (1.0 + value)

    def subsets(self, tasks: Sequence[str]) -> list[tuple[str, ...]]:
        return sampled_subsets(list(tasks), self.sweep)

    def count_subsets(self, n_tasks: int) -> int:
        # Drawn, not m: random draws may repeat a subset (trained once). The draw depends on
        # task positions only, so placeholder names give the same count.
        return len(self.subsets([str(i) for i in range(n_tasks)]))

    def check(self, tasks: Sequence[str]) -> None:
        super().check(tasks)
        self.subsets(tasks)

    def affinity(self, estimates, metrics, tasks):
        return sampled_affinity(metrics, tasks)

    def decide(self, estimates, metrics, tasks, selection) -> dict:
        return sampled_groups(list(metrics), tasks, selection["budgets"])
