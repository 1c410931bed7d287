"""Random controls for an estimating strategy (``selection.controls``): for each group the
strategy decided to train beyond its first stage, a random task set of the same size, drawn
deterministically. They are trained like any network; the solve over them in place of the
decided groups (``selection_method = 'control'``) is what the estimate is judged against: the
same compute, with the choice of tasks left to chance."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence

import numpy as np

from ..sweep import Network

# Redraws per control before a repeat is accepted (a repeat only happens when few task sets of
# that size exist: the tiny configs' pairs).
MAX_REDRAWS = 100


def draw_controls(
    decided: Sequence[dict], tasks: Sequence[str], taken: Iterable[str], seed: int
) -> list[dict]:
    """One random full-size task set per decided group of 2+ tasks that is not in ``taken``
    (the names of the first stage's networks), with the group's number of tasks. A control
    repeats no decided group, first-stage network or other control while a fresh set exists;
    where none does it is marked ``shared`` (it is then in both the strategy's and the
    control's pool). Deterministic in ``seed``, each group's task set and the task order."""
    from ..sweep import task_set_hash

    taken = set(taken)
    tasks = list(tasks)
    decided_names = {Network(tuple(e["tasks"]), e.get("size", "full")).name for e in decided}
    used = taken | decided_names
    controls = []
    for entry in decided:
        group = Network(tuple(entry["tasks"]), entry.get("size", "full"))
        if group.name in taken or len(group.tasks) < 2:
            continue  # trained in the first stage anyway: no compute to match
        k = len(group.tasks)
        # Each group's control has its own stream: adding a budget (more decided groups)
        # keeps every earlier control, so nothing already trained is replaced.
        rng = np.random.default_rng([seed, int(task_set_hash(group.tasks)[:15], 16)])
        for _ in range(MAX_REDRAWS):
            picked = sorted(rng.choice(len(tasks), size=k, replace=False).tolist())
            net = Network(tuple(tasks[i] for i in picked), "full")
            if net.name not in used:
                break
        shared = net.name in taken or net.name in decided_names
        controls.append({"tasks": list(net.tasks), "size": "full", "matches": list(group.tasks),
                         "shared": shared})  # fmt: skip
        used.add(net.name)
    return controls


def _control_entries(path: str | os.PathLike) -> list[dict]:
    with open(path) as fh:
        return json.load(fh).get("controls") or []


def read_controls(path: str | os.PathLike) -> list[Network]:
    """The control networks of a decided-groups file (none when selection.controls is off)."""
    return [Network(tuple(e["tasks"]), e["size"]) for e in _control_entries(path)]


def control_only_networks(path: str | os.PathLike) -> set[Network]:
    """The networks a decided-groups file lists only as random controls: not a decided group,
    and not ``shared`` (a control that is also a decided group or a first-stage network). Only
    their trainings may fail without failing the run (pipeline.jobs)."""
    from .groups import read_decided_groups

    entries = _control_entries(path)
    controls = {Network(tuple(e["tasks"]), e["size"]) for e in entries if not e.get("shared")}
    return controls - set(read_decided_groups(path))
