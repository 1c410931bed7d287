"""What the estimating strategies share: the numbers of groups the budgets buy, groups from an
affinity matrix (TAG's network selection), and the decided groups' file
(``results/groups/<method>.json``)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

from ..io import atomic_write
from ..sweep import Network


def budget_groups(budgets: Sequence[float], n_tasks: int) -> list[int]:
    """The numbers of groups the budgets buy (a full-size network costs about one unit): the
    estimate's best grouping for budget B has floor(B) groups, so only those are trained. At
    617 tasks every number up to 32 would be ~500 distinct groups, against ~60 for
    budgets [1, 2, 4, 8, 16, 32]."""
    return sorted({max(1, min(n_tasks, math.floor(b + 1e-9))) for b in budgets})


def groups_from_affinity(affinity, budgets: Sequence[float]) -> dict:
    """The groups of 2+ tasks of TAG's network selection on ``affinity`` for each number of
    groups the budgets buy, each with its estimated benefit (the group's TAG score: the mean
    affinity onto each member from the others)."""
    from ..affinity import candidate_groups

    ks = budget_groups(budgets, len(affinity.tasks))
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
        "networks": list(networks.values()),
        "groupings": [g.to_dict() for g in groupings],
    }


def read_decided_groups(path: str | os.PathLike) -> list[Network]:
    """The networks a strategy decided to train (results/groups/<method>.json)."""
    with open(path) as fh:
        entries = json.load(fh)["networks"]
    return [Network(tuple(e["tasks"]), e["size"]) for e in entries]


def write_decided_groups(decided: dict, path: str | os.PathLike) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(decided, indent=1, ensure_ascii=False), encoding="utf-8")
