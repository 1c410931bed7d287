"""``pairs``: singles and all pairs are trained; Standley's higher-order approximation (HOA)
estimates every task set of 3 .. ``selection.hoa_max_order`` tasks from the pairs, and the sets
the budgeted solve picks on those estimates are then trained (Standley et al., "Which Tasks
Should Be Learned Together in Multi-task Learning?", ICML 2020, section 3.3)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pyarrow.parquet as pq

from .base import Strategy


def hoa_groups(metrics_files: Sequence[str], tasks: Sequence[str], selection: dict) -> dict:
    """The task sets of 3+ tasks that the budgeted solve picks on HOA's pair-based estimates
    (validation), at any configured budget: the networks HOA would deploy, to be trained."""
    import tempfile

    import pyarrow as pa

    from ..schema import METRICS
    from ..selection import Settings
    from ..selection.candidates import build, query_metrics
    from ..selection.hoa import higher_order_approximation
    from ..selection.solver import solve_budgets

    settings = Settings.from_config(selection)
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "first_stage.parquet")
        pq.write_table(pa.concat_tables([pq.read_table(f, schema=METRICS) for f in metrics_files]),
                       path)  # fmt: skip
        frames = query_metrics(path, settings.esa_fraction, list(tasks))
    (cand,) = build(frames, settings.epoch, settings.cost)
    if settings.objective == "normalised":
        cand = cand.normalised()
    hoa = higher_order_approximation(cand, settings.hoa_max_order, settings.hoa_max_networks)
    nets = np.flatnonzero(hoa.usable(hoa.val))
    solutions = solve_budgets(
        hoa.val[nets], hoa.cost[nets], settings.budgets, settings.cost_tolerance
    )
    single_full = {}
    for t in range(len(hoa.tasks)):
        singles = np.flatnonzero(hoa.singles() & hoa.members[:, t] & hoa.trained)
        if singles.size:
            single_full[t] = hoa.val[singles[np.argmax(hoa.cost[singles])], t]
    networks: dict[tuple[str, ...], dict] = {}
    for budget, solution in zip(settings.budgets, solutions):
        if solution is None:
            continue
        for index in (int(nets[i]) for i in solution.chosen):
            if hoa.trained[index]:
                continue
            members = np.flatnonzero(hoa.members[index])
            group = tuple(hoa.tasks[t] for t in members)
            gains = [(single_full[t] - hoa.val[index, t]) / single_full[t]
                     for t in members if t in single_full]  # fmt: skip
            entry = networks.setdefault(
                group,
                {"tasks": list(group), "size": hoa.size[index] or "full",
                 "estimated_benefit": float(np.mean(gains)) if gains else None,
                 "estimated_val_loss": {hoa.tasks[t]: float(hoa.val[index, t])
                                        for t in members},
                 "budgets": []},
            )  # fmt: skip
            entry["budgets"].append(budget)
    return {"networks": list(networks.values())}


class Pairs(Strategy):
    name = "pairs"
    estimates = True
    estimate_description = (
        "HOA: each member's mean validation loss over its pairs with the others, as relative "
        "gain over its full single-task network"
    )
    estimate_unit = "% estimated validation-loss gain"

    def first_stage_orders(self) -> list[int]:
        return [1, 2]

    def decide(self, estimates, metrics, tasks, selection) -> dict:
        return hoa_groups(list(metrics), tasks, selection)
