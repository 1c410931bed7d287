"""Outputs of the solve: the groupings table (Parquet, declared schema), the budget curve (PNG)
and a summary for people (Markdown). All three are written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from string import Template

import numpy as np
import pandas as pd
import pyarrow as pa

from ..io import atomic_write, save_figure
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
    "control": "random control (trained)",
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
                "selection_method": o.method,
                "status": o.status,
                "note": o.note or None,
            }
            if not s.ok:
                rows.append(head)
                continue
            is_random = o.random is not None
            used = s.cand
            if s.test_estimated:
                head["note"] = (
                    "test total not reported: a chosen task set was never trained (HOA "
                    "estimate); per-task test losses flagged test_estimated"
                )
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
        .groupby(["architecture", "weighting", "selection_method", "budget"], sort=True)
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
        "control": "P-.",
    }
    objective = frame["objective"].iloc[0] if len(frame) else "sum"
    for ax, (arch, weighting) in zip(axes[0], panels):
        panel = totals[(totals["architecture"] == arch) & (totals["weighting"] == weighting)]
        for method in (*METHODS, *BASELINES, "control"):
            line = panel[panel["selection_method"] == method]
            if line.empty:
                continue
            label = LABELS[method] + ("; %: share earned" if method == "control" else "")
            ax.plot(line["budget"], line["total"], styles[method], label=label)
            if line["std"].notna().any():
                ax.fill_between(
                    line["budget"],
                    line["total"] - line["std"].fillna(0),
                    line["total"] + line["std"].fillna(0),
                    alpha=0.15,
                )
        _annotate_share(ax, panel)
        ax.set_title(f"{arch} / {weighting}")
        ax.set_xlabel("inference budget (full-size single-task networks)")
        ax.set_ylabel("total test loss" + (" (normalised)" if objective == "normalised" else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    save_figure(fig, path)


def _annotate_share(ax, panel: pd.DataFrame) -> None:
    """Beside each control point: the share of the strategy's gain over all-in-one that its
    estimate earns (controls.comparison's share_earned, from the plotted totals)."""
    by = {m: line.set_index("budget")["total"] for m, line in panel.groupby("selection_method")}
    if "control" not in by:
        return
    for budget, control in by["control"].items():
        strategy = by.get("optimal", pd.Series(dtype=float)).get(budget, np.nan)
        all_in_one = by.get("all_in_one", pd.Series(dtype=float)).get(budget, np.nan)
        gain = all_in_one - strategy
        if np.isfinite(gain) and gain > 0 and np.isfinite(control):
            share = (control - strategy) / gain
            ax.annotate(f"{round(share * 100):d} %", (budget, control), fontsize=7,
                        textcoords="offset points", xytext=(3, 4))  # fmt: skip


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


# The summary's prose lives in report/ (summary.md, summary_method.md, string.Template), next to
# the captions Snakemake's report shows with it; the tables are filled in here.
TEMPLATES = Path(__file__).resolve().parents[2] / "report"


# The answers a MIP decides, with a proven gap each (worst: how far from the true worst).
PROVEN = ("optimal", "esa", "hoa", "worst")


def _gap(s: Scored, settings: Settings, method: str) -> str:
    """An answer's proven relative gap: 0 (optimal), or the gap where the time limit stopped
    HiGHS first, labelled."""
    o = s.outcome
    if o.gap is None or not s.ok:
        return o.status if not s.ok else "—"
    if o.gap <= 0:
        return "0"
    limit = settings.time_limit(method)
    why = (
        f"stopped: {limit:g} s for all budgets"
        if limit and method != "worst"
        else "stopped at its limit"
    )
    shown = f"{o.gap:.2%}" if np.isfinite(o.gap) else "no bound"
    return f"**{shown}** ({why})"


def _table(header: list[str], rows: list[list[str]]) -> str:
    # A "|" in a task name would end its Markdown cell.
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(
        lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]
    )


# Tasks listed per serving network or chosen set, chosen sets per cell, and tasks in a method's
# header, in summary.md; the rest are counted, so hundreds of tasks keep a readable page
# (groupings.parquet has every task's row, `taskgroup export` a file).
MAX_SERVED_LISTED = 8
MAX_GROUP_LISTED = 12
MAX_SETS_LISTED = 16
MAX_TASKS_LISTED = 30


def _grouped_notes(outcomes: list) -> list[str]:
    """One line per method and note, naming the budgets it holds at ("hoa at 1, 2, 3: ..."),
    so a reason shared by every budget is said once."""
    budgets: dict[tuple[str, str], list[float]] = {}
    for o in outcomes:
        budgets.setdefault((o.method, o.note), []).append(o.budget)
    return [
        f"- {method} at {', '.join(f'{b:g}' for b in sorted(bs))}: {note}"
        for (method, note), bs in budgets.items()
    ]


def _listed(items: list[str], limit: int, what: str, sep: str = ", ") -> str:
    shown = sep.join(items[:limit])
    return shown + (f"{sep}… +{len(items) - limit} more {what}" if len(items) > limit else "")


def _serving(s: Scored) -> str:
    """Each chosen network and the tasks it serves (its best chosen network on selection)."""
    if not s.ok or s.outcome.random is not None:
        return s.outcome.status if not s.ok else "—"
    served: dict[int, list[str]] = {}
    for task, n in zip(s.cand.tasks, s.val_net):
        if n >= 0:
            served.setdefault(int(n), []).append(task)
    parts = []
    for n, tasks in served.items():
        shown = ", ".join(tasks[:MAX_SERVED_LISTED])
        if len(tasks) > MAX_SERVED_LISTED:
            shown += f" … (+{len(tasks) - MAX_SERVED_LISTED} more)"
        parts.append(f"`{s.cand.networks[n]}` → {shown}")
    return "; ".join(parts)


def _method_section(
    cand: Candidates, scored: list[Scored], settings: Settings, excluded: pd.DataFrame
) -> str:
    by = {(s.outcome.method, s.outcome.budget): s for s in scored}
    mine = excluded[
        (excluded["architecture"] == cand.architecture) & (excluded["weighting"] == cand.weighting)
    ]
    if mine.empty:
        excluded_line = "Excluded as diverged: none."
    else:
        listed = "; ".join(
            f"`{r.network}` ({'failed, a control: see its log; ' if r.failed else ''}"
            f"seeds {[int(x) for x in r.diverged_seeds]})"
            for r in mine.itertuples()
        )
        excluded_line = f"Excluded as diverged or failed ({len(mine)}): {listed}."
    budgets = settings.budgets
    totals = _table(
        ["budget"] + [LABELS[m] for m in METHODS + BASELINES],
        [
            [f"{b:g}"] + [_fmt(by[m, b].test_total, by[m, b].test_std) for m in METHODS + BASELINES]
            for b in budgets
        ],
    )
    groups = _table(
        ["budget"] + [LABELS[m] for m in METHODS],
        [
            [f"{b:g}"]
            + [
                _listed(by[m, b].groups(MAX_GROUP_LISTED), MAX_SETS_LISTED, "networks", " ")
                if by[m, b].ok
                else by[m, b].outcome.status
                for m in METHODS
            ]
            for b in budgets
        ],
    )
    serving = _table(
        ["budget", "network → tasks it serves (optimal)"],
        [[f"{b:g}", _serving(by["optimal", b])] for b in budgets],
    )
    advantage = _table(
        ["budget", "vs all-in-one", "vs independent", "vs independent (mixed sizes)"],
        [
            [f"{b:g}"]
            + [
                _verdict(by["optimal", b], by[m, b])
                for m in ("all_in_one", "independent", "independent_mix")
            ]
            for b in budgets
        ],
    )
    gaps = _table(
        ["budget"] + [LABELS[m] for m in PROVEN],
        [[f"{b:g}"] + [_gap(by[m, b], settings, m) for m in PROVEN] for b in budgets],
    )
    ordered = sorted(scored, key=lambda s: (s.outcome.method, s.outcome.budget))
    notes = _grouped_notes([s.outcome for s in ordered if s.outcome.status != "ok"])
    unproven = [
        f"- {s.outcome.method} at {s.outcome.budget:g}: {s.outcome.note}"
        for s in ordered
        if s.ok and s.outcome.gap is not None and s.outcome.gap > 0
    ]
    if unproven:
        proof = "**Not proven optimal** (a time limit stopped the MIP first):\n\n" + "\n".join(
            unproven
        )
    else:
        proof = "Every OS, ESA and HOA answer above is proven optimal (MIP gap 0)" + (
            "; so is every worst cover."
            if any(s.outcome.method == "worst" and s.ok for s in scored)
            else "."
        )
    template = Template((TEMPLATES / "summary_method.md").read_text())
    return template.substitute(
        architecture=cand.architecture,
        weighting=cand.weighting,
        n_networks=len(cand.networks),
        n_tasks=len(cand.tasks),
        tasks=_listed(list(cand.tasks), MAX_TASKS_LISTED, "tasks"),
        n_seeds=len(cand.seeds),
        excluded=excluded_line,
        totals=totals,
        groups=groups,
        serving=serving,
        advantage=advantage,
        not_solved="\nNot solved:\n\n" + "\n".join(notes) + "\n" if notes else "",
        gaps=gaps,
        proof=proof,
    )


# The answer whose intervals summary.md shows (gains.parquet has every method's).
SHOWN_GAINS = ("optimal", "control")


def _interval_cell(row) -> str:
    if pd.isna(row.difference):
        return "—"
    if pd.isna(row.low):
        return f"{row.difference:+.5f} (no interval: {row.how.removeprefix('none: ')})"
    if row.low > 0:
        verdict = "gain, distinguishable from 0"
    elif row.high < 0:
        verdict = "**loss**, distinguishable from 0"
    else:
        verdict = "not distinguishable from 0"
    return f"{row.difference:+.5f} [{row.low:+.5f}, {row.high:+.5f}] {verdict}"


def gains_section(cand: Candidates, gains: pd.DataFrame, budgets) -> str:
    """Per budget, the answer's total test loss minus each reference's, with its 95 % interval
    and whether it is distinguishable from zero; empty when there is nothing to show."""
    mine = gains[
        (gains["architecture"] == cand.architecture) & (gains["weighting"] == cand.weighting)
    ]
    parts = []
    for method in SHOWN_GAINS:
        rows = mine[mine["method"] == method]
        if rows.empty:
            continue
        against = [m for m in BASELINES + ("control",) if m in set(rows["against"])]
        cell = {(r.budget, r.against): _interval_cell(r) for r in rows.itertuples()}
        table = _table(
            ["budget"] + [f"vs {LABELS.get(m, m)}" for m in against],
            [[f"{b:g}"] + [cell.get((b, m), "—") for m in against] for b in budgets],
        )
        hows = []
        if (rows["how"] == "seeds_t").any():
            n = int(rows.loc[rows["how"] == "seeds_t", "n_seeds"].max())
            hows.append(f"paired over {n} seeds (Student t on the per-seed differences)")
        if (rows["how"] == "bootstrap").any():
            b = int(rows.loc[rows["how"] == "bootstrap", "resamples"].max())
            hows.append(f"a paired bootstrap over the test rows ({b} resamples, one seed)")
        parts.append(
            f"**{LABELS.get(method, method)}: gain over each reference (its total test loss "
            f"minus the answer's; positive: the answer's loss is lower), with a 95 % interval** "
            f"({'; '.join(hows) or 'no interval'}).\n\n{table}\n"
        )
    return "\n".join(parts)


def summary_markdown(
    results: list[tuple[Candidates, list[Scored]]],
    settings: Settings,
    excluded: pd.DataFrame,
    source: str,
    sections: list[str] | None = None,
    preface: str = "",
    gains: pd.DataFrame | None = None,
) -> str:
    """Which tasks train together at each budget, per method, whether it beats baselines by
    more than the seed noise (with ``gains``: each difference's 95 % interval, and whether it
    is distinguishable from zero), and which answers are not proven optimal."""
    template = Template((TEMPLATES / "summary.md").read_text())
    return template.substitute(
        source=source,
        objective=settings.objective,
        objective_meaning="Standley: plain sum"
        if settings.objective == "sum"
        else "each task divided by its full-size single-task loss",
        epoch=settings.epoch,
        esa_fraction=f"{settings.esa_fraction:g}",
        tolerance=f"{settings.cost_tolerance:g}",
        cost_unit=results[0][0].cost_unit if results else "—",
        cost_model=settings.cost,
        methods=preface
        + "\n".join(
            _method_section(c, s, settings, excluded)
            + extra
            + ("" if gains is None else "\n" + gains_section(c, gains, settings.budgets))
            for (c, s), extra in zip(results, sections or [""] * len(results))
        ),
    )


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text)
