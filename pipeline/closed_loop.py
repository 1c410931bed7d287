"""The second stage of an estimating sweep (``sweep.strategy`` tag or pairs): decide, from the
first stage's results, which task groups to train for real, and afterwards put each group's
estimated benefit next to its measured one.

* ``tag``: the affinity the all-in-one training recorded (every seed, every epoch, weighted by
  the lookahead steps that entered it) goes through TAG's network selection
  (:func:`pipeline.affinity.candidate_groups`) for every number of groups a budget can buy
  (1 .. the largest budget, full-size networks costing one unit each). Every group of 2+ tasks
  in any of those groupings is a candidate.
* ``pairs``: Standley's higher-order approximation (HOA) estimates every task set of 3 ..
  ``selection.hoa_max_order`` tasks from the trained pairs; the sets the budgeted solve picks on
  those estimates, at any configured budget, are candidates.

Candidates are trained at full size with every seed and method, like any network; the exact
budgeted solve then runs over measured results only.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from .io import write_text
from .sweep import Network


def mean_affinity(files: Sequence[str], tasks: Sequence[str]):
    """The recorded affinity of ``files`` (one per seed) as one matrix: each (source, target)
    the steps-weighted mean over seeds and epochs of the finite epoch means."""
    from .affinity import Affinity

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


def max_groups(budgets: Sequence[float], n_tasks: int) -> int:
    """Full-size networks cost about one unit each: the most groups any budget buys."""
    return max(1, min(n_tasks, math.floor(max(budgets) + 1e-9)))


def tag_candidates(affinity_files: Sequence[str], tasks: Sequence[str], budgets) -> dict:
    from .affinity import candidate_groups

    affinity = mean_affinity(affinity_files, tasks)
    ks = list(range(1, max_groups(budgets, len(tasks)) + 1))
    groupings = candidate_groups(affinity, ks)
    networks: dict[tuple[str, ...], dict] = {}
    for grouping in groupings:
        for group, score, members in zip(
            grouping.groups, grouping.group_score, grouping.group_member_score
        ):
            if len(group) < 2:
                continue
            entry = networks.setdefault(
                tuple(group),
                {"tasks": list(group), "size": "full", "estimated_benefit": score,
                 "estimated_member_benefit": dict(members), "max_groups": []},
            )  # fmt: skip
            entry["max_groups"].append(grouping.max_groups)
    return {
        "strategy": "tag",
        "estimate": "mean TAG affinity onto each member from the others (higher is better)",
        "networks": list(networks.values()),
        "groupings": [g.to_dict() for g in groupings],
    }


def read_candidates(path: str | os.PathLike) -> list[Network]:
    with open(path) as fh:
        entries = json.load(fh)["networks"]
    return [Network(tuple(e["tasks"]), e["size"]) for e in entries]


def candidates_job(input, output, params, log) -> None:
    strategy = params.strategy
    if strategy == "tag":
        decided = tag_candidates(list(input.affinity), params.tasks, params.budgets)
    elif strategy == "pairs":
        from .selection.hoa import hoa_candidates

        decided = hoa_candidates(list(input.metrics), params.tasks, params.selection)
    else:
        raise ValueError(f"sweep.strategy {strategy!r} decides no candidates")
    decided["method"] = params.method
    decided["tasks"] = list(params.tasks)
    write_text(output.candidates, json.dumps(decided, indent=1, ensure_ascii=False))
    with open(log[0], "w") as fh:
        print(f"{strategy}: {len(decided['networks'])} candidate network(s)", file=fh)
