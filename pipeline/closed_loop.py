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

from .io import atomic_write
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


def budget_groups(budgets: Sequence[float], n_tasks: int) -> list[int]:
    """The numbers of groups the budgets buy (a full-size network costs about one unit): the
    estimate's best grouping for budget B has floor(B) groups, so only those are trained. At
    617 tasks every number up to 32 would be ~500 distinct groups, against ~60 for
    budgets [1, 2, 4, 8, 16, 32]."""
    return sorted({max(1, min(n_tasks, math.floor(b + 1e-9))) for b in budgets})


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


def sampled_candidates(metrics_files: Sequence[str], tasks: Sequence[str], budgets) -> dict:
    """Li et al.'s higher-order affinity from the subset networks' validation losses (each
    target's losses divided by its mean, so every task weighs the same); pairs never sampled
    together (sweep.sampled.cover_pairs false) get the target's mean affinity."""
    from .affinity import Affinity, higher_order_affinity

    losses = subset_losses(metrics_files, tasks)
    affinity = higher_order_affinity(losses, tasks, normalise=True, require_all_pairs=False)
    matrix = affinity.matrix.copy()
    target_mean = np.nanmean(np.where(np.eye(len(tasks), dtype=bool), np.nan, matrix), axis=0)
    missing = np.isnan(matrix)
    matrix[missing] = np.broadcast_to(target_mean, matrix.shape)[missing]
    decided = groups_from_affinity(Affinity(tuple(tasks), matrix), budgets, "sampled")
    decided["estimate"] = (
        "minus the mean normalised validation loss of each member over the subsets it shares "
        "with the other members (higher is better)"
    )
    return decided


def tag_candidates(affinity_files: Sequence[str], tasks: Sequence[str], budgets) -> dict:
    affinity = mean_affinity(affinity_files, tasks)
    return groups_from_affinity(affinity, budgets, "tag")


def groups_from_affinity(affinity, budgets, strategy: str) -> dict:
    from .affinity import candidate_groups

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
        "strategy": strategy,
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
    elif strategy == "sampled":
        decided = sampled_candidates(list(input.metrics), params.tasks, params.budgets)
    elif strategy == "pairs":
        decided = hoa_candidates(list(input.metrics), params.tasks, params.selection)
    else:
        raise ValueError(f"sweep.strategy {strategy!r} decides no candidates")
    decided["method"] = params.method
    decided["tasks"] = list(params.tasks)
    with atomic_write(output.candidates) as tmp:
        tmp.write_text(json.dumps(decided, indent=1, ensure_ascii=False), encoding="utf-8")
    with open(log[0], "w") as fh:
        print(f"{strategy}: {len(decided['networks'])} candidate network(s)", file=fh)


def concat_affinity(files: Sequence[str], out: str) -> int:
    """Every method's and seed's recorded affinity as one table (results/affinity.parquet)."""
    import pyarrow as pa

    from .schema import AFFINITY, write_table

    table = pa.concat_tables([pq.read_table(f, schema=AFFINITY) for f in sorted(files)])
    write_table(table, out, AFFINITY)
    return table.num_rows


def measured_gains(metrics: str) -> pd.DataFrame:
    """Per multi-task network x member x split: the relative loss gain over the member's
    full single-task network (pipeline/sql/closed_loop/member_gains.sql)."""
    from importlib import resources

    import duckdb

    sql = resources.files("pipeline.sql").joinpath("closed_loop/member_gains.sql").read_text()
    with duckdb.connect() as con:
        frame = con.execute(sql, {"metrics": str(metrics)}).df()
    frame["tasks"] = frame["tasks"].map(tuple)
    return frame


def estimates_table(metrics: str, candidates_files: Sequence[str]):
    import pyarrow as pa

    from .schema import ESTIMATES

    gains = measured_gains(metrics)
    mean_gain = (
        gains.groupby(["architecture", "weighting", "tasks", "split"])
        .agg(gain=("gain", "mean"), seeds=("seeds", "min"))
        .reset_index()
    )
    lookup = {
        (r.architecture, r.weighting, r.tasks, r.split): (r.gain, r.seeds)
        for r in mean_gain.itertuples()
    }
    rows: dict[str, list] = {name: [] for name in ESTIMATES.names}
    for path in candidates_files:
        with open(path) as fh:
            decided = json.load(fh)
        architecture, weighting = decided["method"].split("-", 1)
        for entry in decided["networks"]:
            tasks = tuple(entry["tasks"])
            val = lookup.get((architecture, weighting, tasks, "val"), (None, None))
            test = lookup.get((architecture, weighting, tasks, "test"), (None, None))
            for name, value in (
                ("architecture", architecture), ("weighting", weighting),
                ("strategy", decided["strategy"]), ("tasks", list(tasks)),
                ("n_tasks", len(tasks)), ("estimated_benefit", entry["estimated_benefit"]),
                ("measured_val_gain", val[0]), ("measured_test_gain", test[0]),
                ("seeds", val[1]),
            ):  # fmt: skip
                rows[name].append(None if value is None or value != value else value)
    return pa.table(rows, schema=ESTIMATES)


def _group_label(tasks: Sequence[str], shown: int = 4) -> str:
    """A group as text that stays short at hundreds of tasks."""
    names = ", ".join(t.replace("|", "\\|") for t in tasks[:shown])
    return (
        names if len(tasks) <= shown else f"{names}, … (+{len(tasks) - shown}; {len(tasks)} tasks)"
    )


MAX_ROWS_SHOWN = 40


def estimates_report(metrics: str, candidates_files: Sequence[str], table_out, summary_out) -> None:
    from scipy.stats import spearmanr

    from .io import atomic_write
    from .schema import ESTIMATES, write_table

    table = estimates_table(metrics, candidates_files)
    write_table(table, table_out, ESTIMATES)
    frame = table.to_pandas()
    lines = ["# Estimated against measured benefit of each candidate group", ""]
    lines.append(
        "Measured gain: mean over the group's members of the relative final-epoch loss drop "
        "against each member's full single-task network (mean over seeds); positive is better. "
        "Estimated: the strategy's own estimate (tag: mean TAG affinity onto the members; "
        "sampled: minus the members' mean normalised loss in the subsets they share; both "
        "unitless, higher is better; pairs: HOA's estimated validation gain). Only the ranking "
        "of the estimates is comparable with the measured gains; totals never mix the two."
    )
    for (architecture, weighting), part in frame.groupby(["architecture", "weighting"]):
        part = part.sort_values("estimated_benefit", ascending=False)
        measured = part.dropna(subset=["estimated_benefit", "measured_val_gain"])
        lines += ["", f"## {architecture} × {weighting} ({part['strategy'].iloc[0]})", ""]
        if len(measured) >= 3:
            rho = spearmanr(measured["estimated_benefit"], measured["measured_val_gain"])[0]
            lines.append(
                f"Rank correlation (Spearman) of estimated and measured validation gain over "
                f"{len(measured)} groups: **{rho:+.2f}**."
            )
            lines.append("")
        lines += [
            "| group | tasks | estimated | measured val gain | measured test gain |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in part.head(MAX_ROWS_SHOWN).itertuples():
            cells = [
                _group_label(row.tasks), str(row.n_tasks),
                *(("—" if v is None or v != v else f"{v:+.4f}")
                  for v in (row.estimated_benefit, row.measured_val_gain,
                            row.measured_test_gain)),
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        if len(part) > MAX_ROWS_SHOWN:
            lines.append(f"\n{len(part) - MAX_ROWS_SHOWN} more in estimates.parquet.")
    with atomic_write(summary_out) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def hoa_candidates(metrics_files: Sequence[str], tasks: Sequence[str], selection: dict) -> dict:
    """The task sets of 3+ tasks that the budgeted solve picks on HOA's pair-based estimates
    (validation), at any configured budget: the networks HOA would deploy, to be trained."""
    import tempfile

    import pyarrow as pa

    from .schema import METRICS
    from .selection import Settings
    from .selection.candidates import build, query_metrics
    from .selection.hoa import higher_order_approximation
    from .selection.solver import solve_budgets

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
    return {
        "strategy": "pairs",
        "estimate": "HOA: each member's mean validation loss over its pairs with the others, "
        "as relative gain over its full single-task network",
        "networks": list(networks.values()),
    }
