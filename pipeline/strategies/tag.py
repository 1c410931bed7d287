"""``tag``: singles and the all-in-one network, whose training records inter-task affinity
with TAG's lookahead; the groups of TAG's network selection for each budget's number of groups
are then trained (Fifty, Amid, Zhao, Yu, Anil & Finn, "Efficiently Identifying Task Groupings
for Multi-Task Learning", NeurIPS 2021). The lookahead: ``pipeline/affinity/lookahead.py``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from .base import Strategy
from .groups import groups_from_affinity


def mean_affinity(files: Sequence[str], tasks: Sequence[str]):
    """The recorded affinity of ``files`` (one per seed) as one matrix: each (source, target)
    the steps-weighted mean over seeds and epochs of the finite epoch means."""
    from ..affinity import Affinity

    frames = [pq.read_table(f, columns=["source", "target", "value", "steps"]).to_pandas()
              for f in files]  # fmt: skip
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[np.isfinite(frame["value"]) & (frame["steps"] > 0)]
    frame = frame.assign(weighted=frame["value"] * frame["steps"])
    sums = frame.groupby(["source", "target"])[["weighted", "steps"]].sum()
    position = {t: i for i, t in enumerate(tasks)}
    matrix = np.full((len(tasks), len(tasks)), np.nan)
    rows = [position[s] for s in sums.index.get_level_values(0)]
    cols = [position[t] for t in sums.index.get_level_values(1)]
    matrix[rows, cols] = (sums["weighted"] / sums["steps"]).to_numpy()
    off_diagonal = ~np.eye(len(tasks), dtype=bool)
    missing = np.argwhere(np.isnan(matrix) & off_diagonal)
    if missing.size:
        named = [(tasks[i], tasks[j]) for i, j in missing[:5]]
        raise ValueError(
            f"affinity: no lookahead step had labels for both tasks of {len(missing)} pair(s), "
            f"e.g. {named}; raise training.batch_size or the epochs"
        )
    return Affinity(tuple(tasks), matrix)


def concat_affinity(files: Sequence[str], out: str) -> int:
    """Every method's and seed's recorded affinity as one table (results/affinity.parquet)."""
    import pyarrow as pa

    from ..schema import AFFINITY, write_table

    table = pa.concat_tables([pq.read_table(f, schema=AFFINITY) for f in sorted(files)])
    write_table(table, out, AFFINITY)
    return table.num_rows


class Tag(Strategy):
    name = "tag"
    estimates = True
    estimation = "recorded"
    needs_all_in_one = True  # the estimation run is the all-in-one network's training
    estimate_description = (
        "mean TAG affinity onto each member from the others: the relative drop of the member's "
        "loss after one lookahead step on another member's loss (higher is better)"
    )
    # Affinities are ~1e-6 to 1e-4 of the target's loss per step: parts per million.
    estimate_unit = "ppm of the member's loss per lookahead step"

    def readable(self, value: float) -> float:
        return 1e6 * value

    def recording_params(self, config: dict) -> dict:
        """TAG's lookahead settings (the lookahead step defaults to the training's rate)."""
        tag = dict(config["sweep"]["tag"])
        if tag.get("lookahead_lr") is None:
            tag["lookahead_lr"] = config["training"]["lr"]
        return tag

    def affinity(self, estimates, metrics, tasks):
        return mean_affinity(estimates, tasks)

    def decide(self, estimates, metrics, tasks, selection) -> dict:
        return groups_from_affinity(mean_affinity(estimates, tasks), selection["budgets"])
