"""Outputs of the solve: the groupings table (Parquet, declared schema), the budget curve (PNG)
and a summary for people (Markdown). All three are written atomically."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa

from ..io import atomic_write
from ..schema import GROUPINGS, write_table
from .candidates import Candidates
from .scoring import Scored
from .solving import BASELINES, METHODS, Settings

LABELS = {
    "optimal": "optimal (OS)",
    "esa": "early stopping (ESA)",
    "hoa": "higher-order approx. (HOA)",
    "all_in_one": "all-in-one",
    "independent": "independent",
    "independent_mix": "independent (mixed sizes)",
    "random": "random",
    "worst": "worst",
}


def groupings_frame(
    results: list[tuple[Candidates, list[Scored]]],
    settings: Settings,
) -> pd.DataFrame:
    """The groupings table as a DataFrame of the GROUPINGS columns."""
    rows = []
    for cand, scored in results:
        base = {
            "architecture": cand.architecture,
            "weighting": cand.weighting,
            "objective": settings.objective,
            "epoch": settings.epoch,
            "n_seeds": len(cand.seeds),
        }
        for s in scored:
            o = s.outcome
            head = {
                **base,
                "budget": o.budget,
                "method": o.method,
                "status": o.status,
                "note": o.note or None,
            }
            if not s.ok:
                rows.append(head)
                continue
            is_random = o.random is not None
            used = s.cand
            head.update(
                networks=None if is_random else [used.networks[n] for n in o.chosen],
                cost=None if is_random else float(used.cost[list(o.chosen)].sum()),
                val_total=None if is_random else float(s.val.sum()),
                test_total=s.test_total,
                test_total_std=None if np.isnan(s.test_std) else s.test_std,
                samples=o.random.samples if is_random else None,
                gap=o.gap,
            )
            for t, task in enumerate(cand.tasks):
                row = dict(head, task=task, test_loss=float(s.test[t]))
                if not is_random:
                    row.update(
                        network=used.networks[s.val_net[t]],
                        val_loss=float(s.val[t]),
                        test_network=used.networks[s.test_net[t]],
                        test_estimated=not bool(used.trained[s.test_net[t]]),
                    )
                rows.append(row)
    return pd.DataFrame(rows, columns=GROUPINGS.names)


def write_groupings(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    write_table(table, path, GROUPINGS)


def plot_curves(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Total test loss against budget, one line per method and baseline, one panel per
    architecture/weighting; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    totals = (
        frame[frame["status"] == "ok"]
        .groupby(["architecture", "weighting", "method", "budget"], sort=True)
        .agg(total=("test_total", "first"), std=("test_total_std", "first"))
        .reset_index()
    )
    panels = sorted({(a, w) for a, w in zip(frame["architecture"], frame["weighting"])})
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.8), squeeze=False)
    styles = {
        "optimal": "o-",
        "esa": "s-",
        "hoa": "^-",
        "all_in_one": "D--",
        "independent": "v--",
        "independent_mix": "<--",
        "random": "x:",
        "worst": "+:",
    }
    objective = frame["objective"].iloc[0] if len(frame) else "sum"
    for ax, (arch, weighting) in zip(axes[0], panels):
        panel = totals[(totals["architecture"] == arch) & (totals["weighting"] == weighting)]
        for method in METHODS + BASELINES:
            line = panel[panel["method"] == method]
            if line.empty:
                continue
            ax.plot(line["budget"], line["total"], styles[method], label=LABELS[method])
            if line["std"].notna().any():
                ax.fill_between(
                    line["budget"],
                    line["total"] - line["std"].fillna(0),
                    line["total"] + line["std"].fillna(0),
                    alpha=0.15,
                )
        ax.set_title(f"{arch} / {weighting}")
        ax.set_xlabel("inference budget (full-size single-task networks)")
        ax.set_ylabel("total test loss" + (" (normalised)" if objective == "normalised" else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
    finally:
        plt.close(fig)


def _fmt(total: float, std: float) -> str:
    if np.isnan(total):
        return "—"
    return f"{total:.5f}" if np.isnan(std) else f"{total:.5f} ± {std:.5f}"


def _verdict(best: Scored, baseline: Scored) -> str:
    if not (best.ok and baseline.ok):
        return "—"
    advantage = baseline.test_total - best.test_total
    stds = [x for x in (best.test_std, baseline.test_std) if not np.isnan(x)]
    if not stds:
        return f"{advantage:+.5f} (one seed: noise unknown)"
    noise = max(stds)
    word = "exceeds" if advantage > noise else "within"
    return f"{advantage:+.5f} ({word} seed noise {noise:.5f})"


def summary_markdown(
    results: list[tuple[Candidates, list[Scored]]],
    settings: Settings,
    excluded: pd.DataFrame,
    source: str,
) -> str:
    """Which tasks train together at each budget, per method, and whether it beats baselines
    by more than the seed noise."""
    lines = [
        "# Task groupings",
        "",
        f"Source: `{source}`. Objective: **{settings.objective}** of per-task losses "
        f"({'Standley: plain sum' if settings.objective == 'sum' else 'each task divided by its full-size single-task loss'}); "  # noqa: E501
        f"networks judged at the **{settings.epoch}** epoch; ESA selects on the epoch at "
        f"{settings.esa_fraction:g} of training. A budget B admits networks costing at most "
        f"B + {settings.cost_tolerance:g} in total (extra heads are a rounding error of the "
        "trunk). Costs: " + (results[0][0].cost_unit if results else "—") + " "
        f"(`selection.cost: {settings.cost}`). Each method chooses on validation losses and is "
        "scored on test: every task by "
        "its best chosen network. `*` marks a HOA task set that was never trained (its test "
        "loss is estimated from pairs).",
        "",
    ]
    for cand, scored in results:
        by = {(s.outcome.method, s.outcome.budget): s for s in scored}
        lines += [f"## {cand.architecture} / {cand.weighting}", ""]
        lines.append(
            f"{len(cand.networks)} candidate networks over {len(cand.tasks)} tasks "
            f"({', '.join(cand.tasks)}), {len(cand.seeds)} seed(s)."
        )
        mine = excluded[
            (excluded["architecture"] == cand.architecture)
            & (excluded["weighting"] == cand.weighting)
        ]
        if mine.empty:
            lines.append("Excluded as diverged: none.")
        else:
            listed = "; ".join(
                f"`{r.network}` (seeds {[int(x) for x in r.diverged_seeds]})"
                for r in mine.itertuples()
            )
            lines.append(f"Excluded as diverged ({len(mine)}): {listed}.")
        lines += ["", "### Total test loss", ""]
        header = ["budget"] + [LABELS[m] for m in METHODS + BASELINES]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for b in settings.budgets:
            cells = [f"{b:g}"] + [
                _fmt(by[m, b].test_total, by[m, b].test_std) for m in METHODS + BASELINES
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "### Which tasks train together", ""]
        lines += [
            "| budget | " + " | ".join(LABELS[m] for m in METHODS) + " |",
            "|---|" + "---|" * len(METHODS),
        ]
        for b in settings.budgets:
            cells = []
            for m in METHODS:
                s = by[m, b]
                cells.append(" ".join(s.groups()) if s.ok else f"{s.outcome.status}")
            lines.append(f"| {b:g} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "### Optimal grouping's advantage over the baselines",
            "",
            "Advantage = baseline total − optimal total (positive: the grouping is "
            "better). It exceeds seed noise when larger than the larger of the two totals' "
            "standard deviations over seeds.",
            "",
            "| budget | vs all-in-one | vs independent | vs independent (mixed sizes) |",
            "|---|---|---|---|",
        ]
        for b in settings.budgets:
            best = by["optimal", b]
            lines.append(
                f"| {b:g} | {_verdict(best, by['all_in_one', b])} | "
                f"{_verdict(best, by['independent', b])} | "
                f"{_verdict(best, by['independent_mix', b])} |"
            )
        notes = [
            f"{s.outcome.method} at {s.outcome.budget:g}: {s.outcome.note}"
            for s in sorted(scored, key=lambda s: (s.outcome.method, s.outcome.budget))
            if s.outcome.status != "ok"
        ]
        if notes:
            lines += ["", "Not solved:", ""] + [f"- {n}" for n in notes]
        unproven = [
            f"{s.outcome.method} at {s.outcome.budget:g}: {s.outcome.note}"
            for s in sorted(scored, key=lambda s: (s.outcome.method, s.outcome.budget))
            if s.ok and s.outcome.gap is not None and s.outcome.gap > 0
        ]
        lines += [""]
        if unproven:
            lines += ["**Not proven optimal** (`selection.time_limit_s`):", ""]
            lines += [f"- {n}" for n in unproven]
        else:
            lines.append(
                "Every OS, ESA and HOA answer above is proven optimal (MIP gap 0)"
                + (
                    "."
                    if not any(s.outcome.method == "worst" and s.ok for s in scored)
                    else "; so is every worst cover."
                )
            )
        lines.append("")
    return "\n".join(lines)


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text)
