"""Subcommands ``select`` and ``solve-external`` of ``taskgroup``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def _selection_config(args: argparse.Namespace) -> tuple[dict, list[str] | None]:
    """The config's selection section (defaults filled) and task list, through the workflow's
    own schema check (pipeline.options.validate_schema: errors name the key); command-line
    overrides win and are checked the same way. The config is the one ``snakemake
    --configfile`` run here would use: ./config.yaml, then each --configfile over it (a later
    dataset replacing the earlier whole; pipeline.options.merge_config_layers), unless
    --replace-workflow-config; ``--configfile ''`` alone: the defaults."""
    from ..options import (
        WORKFLOW_CONFIGFILE,
        ConfigError,
        config_files,
        merge_config_layers,
        validate_schema,
    )

    if args.configfile is None:  # not given: ./config.yaml where there is one
        given = [WORKFLOW_CONFIGFILE] if Path(WORKFLOW_CONFIGFILE).exists() else []
    else:
        given = [p for p in args.configfile if p]
    files = []
    if given:
        base = None if args.replace_workflow_config else WORKFLOW_CONFIGFILE
        try:
            files = config_files(given, base=base)
        except FileNotFoundError as err:
            raise ConfigError(str(err)) from None
    layers = []
    for file in files:
        with open(file) as fh:
            layers.append(yaml.safe_load(fh) or {})
    raw = merge_config_layers(layers)
    raw = {**raw, "selection": dict(raw.get("selection") or {})}
    if args.budgets:
        raw["selection"]["budgets"] = args.budgets
    if args.objective:
        raw["selection"]["objective"] = args.objective
    where = " + ".join(map(str, files)) or "command line"
    try:
        config = validate_schema(raw)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    dataset = config["dataset"]
    tasks = args.tasks.split(",") if args.tasks else dataset.get("tasks")
    if tasks is not None:
        excluded = set(dataset.get("exclude_tasks", []))
        tasks = [t for t in tasks if t not in excluded]
    return config["selection"], tasks


def _budgets(text: str) -> list[float]:
    try:
        return [float(b) for b in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of numbers: {text!r}"
        ) from None


def cmd_select(args: argparse.Namespace) -> int:

    from . import run_selection

    selection, tasks = _selection_config(args)
    # The workflow's results folder holds the manifest and split beside the metrics: with them
    # a one-seed interval is bootstrapped from the chosen networks' per-sample test losses.
    beside = [Path(args.metrics).with_name(n) for n in ("networks.parquet", "split.parquet")]
    networks, split = (str(p) if p.exists() else None for p in beside)
    return _run(
        lambda: run_selection(
            args.metrics, selection, args.out, tasks, networks_path=networks, split_path=split
        ),
        args.out,
    )


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
    print(
        f"wrote {out}/groupings.parquet, {out}/gains.parquet, {out}/budget_curve.png, "
        f"{out}/summary.md"
    )
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--configfile",
        nargs="+",
        help="read the selection: section and dataset.tasks of these files merged over "
        "./config.yaml, as `snakemake --configfile` run here does ('' for defaults)",
    )
    parser.add_argument(
        "--replace-workflow-config",
        action="store_true",
        help="leave ./config.yaml out, as snakemake --replace-workflow-config does",
    )
    parser.add_argument("--out", default="results/selection", help="output directory")
    parser.add_argument(
        "--budgets", type=_budgets, help="comma-separated budgets, overriding the config"
    )
    parser.add_argument("--objective", choices=["sum", "normalised"])
    parser.add_argument("--tasks", help="comma-separated tasks to cover (default: all)")


def add_subparsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``select`` and ``solve-external`` on ``taskgroup``'s subparsers."""
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
