"""Subcommands ``select`` and ``solve-external`` for ``python -m pipeline``."""

from __future__ import annotations

import argparse
import sys

import yaml


def _selection_config(args: argparse.Namespace) -> tuple[dict, list[str] | None]:
    """The config's selection section and task list; command-line overrides win."""
    selection: dict = {}
    tasks = None
    if args.configfile:
        with open(args.configfile) as fh:
            config = yaml.safe_load(fh) or {}
        selection = dict(config.get("selection") or {})
        tasks = (config.get("dataset") or {}).get("tasks")
    if args.budgets:
        selection["budgets"] = [float(b) for b in args.budgets.split(",")]
    if args.objective:
        selection["objective"] = args.objective
    return selection, args.tasks.split(",") if args.tasks else tasks


def cmd_select(args: argparse.Namespace) -> int:
    from . import run_selection

    selection, tasks = _selection_config(args)
    return _run(lambda: run_selection(args.metrics, selection, args.out, tasks), args.out)


def cmd_solve_external(args: argparse.Namespace) -> int:
    from . import run_external

    selection, tasks = _selection_config(args)
    return _run(lambda: run_external(args.path, selection, args.out, tasks), args.out)


def _run(action, out: str) -> int:
    from .external import ExternalFormatError
    from .solver import InfeasibleBudget

    try:
        action()
    except (InfeasibleBudget, ExternalFormatError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}/groupings.parquet, {out}/budget_curve.png, {out}/summary.md")
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--configfile",
        default="config.yaml",
        help="read its selection: section and dataset.tasks ('' for defaults)",
    )
    parser.add_argument("--out", default="results/selection", help="output directory")
    parser.add_argument("--budgets", help="comma-separated budgets, overriding the config")
    parser.add_argument("--objective", choices=["sum", "normalised"])
    parser.add_argument("--tasks", help="comma-separated tasks to cover (default: all)")


def add_subparsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``select`` and ``solve-external`` on ``python -m pipeline``'s subparsers."""
    s = subparsers.add_parser("select", help="budgeted grouping solve over collected metrics")
    s.add_argument(
        "--metrics",
        default="results/metrics.parquet",
        help="the collected metrics Parquet file (METRICS schema)",
    )
    _common(s)
    s.set_defaults(func=cmd_select)

    e = subparsers.add_parser(
        "solve-external",
        help="budgeted grouping solve over results trained elsewhere (docs/external-results.md)",
    )
    e.add_argument("path", help="external results, .parquet or .csv")
    _common(e)
    e.set_defaults(func=cmd_solve_external)
