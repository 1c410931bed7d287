"""``python -m pipeline``: split data, train one network, collect, query, select.

Snakemake calls these same functions; the CLI is for people: day-one queries over a sweep and
read-only SQL.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

# Named queries that read best as a matrix: (row, column, value).
PIVOTS = {"pairwise_gain": ("task", "partner", "gain")}


def _print(df: pd.DataFrame, fmt: str, pivot: tuple[str, str, str] | None) -> None:
    if pivot and not df.empty:
        row, col, value = pivot
        index = [c for c in df.columns if c not in (row, col, value)] + [row]
        df = df.pivot_table(index=index, columns=col, values=value, aggfunc="first")
    if fmt == "csv":
        df.to_csv(sys.stdout)
    elif fmt == "json":
        print(df.reset_index().to_json(orient="records") if pivot else df.to_json(orient="records"))
    else:
        with pd.option_context(
            "display.max_rows",
            500,
            "display.width",
            200,
            "display.max_columns",
            50,
            "display.float_format",
            "{:.5f}".format,
        ):
            print(df.to_string())


def _database(results: str) -> Path:
    return Path(results) / "sweep.duckdb"


def cmd_query(args: argparse.Namespace) -> int:
    from .query import named_queries, run_named

    if args.list or not args.name:
        for name, description in named_queries().items():
            print(f"{name:16s} {description}")
        return 0
    params = {"split": args.split}
    df = run_named(_database(args.results), args.name, params)
    pivot = None if args.long else PIVOTS.get(args.name)
    _print(df, args.format, pivot)
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from .query import run_query

    sql = sys.stdin.read() if args.sql == "-" else args.sql
    _print(run_query(_database(args.results), sql), args.format, None)
    return 0


def cmd_networks(args: argparse.Namespace) -> int:
    from .config import load_config_file
    from .sweep import plan_networks

    config = load_config_file(args.configfile, check_data=False)
    for net in plan_networks(config["dataset"]["tasks"], config["sweep"]):
        # File stems may be hashes (odd or many task names): --files says which is which.
        print(f"{net.size}/{net.stem}.parquet\t{net.name}" if args.files else net.name)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .config import load_config_file
    from .sweep import plan_networks

    config = load_config_file(args.configfile)
    nets = plan_networks(config["dataset"]["tasks"], config["sweep"])
    print(
        f"{args.configfile}: valid; {len(config['dataset']['tasks'])} tasks, "
        f"{len(nets)} networks x {len(config['sweep']['seeds'])} seed(s)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    q = sub.add_parser("query", help="run a named query over a collected sweep (read-only)")
    q.add_argument("name", nargs="?", help="query name; omit (or --list) to list them")
    q.add_argument("--list", action="store_true")
    q.add_argument("--results", default="results", help="the sweep's results_dir")
    q.add_argument("--split", default="val", choices=["train", "val", "test"])
    q.add_argument("--format", default="table", choices=["table", "csv", "json"])
    q.add_argument("--long", action="store_true", help="long rows instead of a matrix")
    q.set_defaults(func=cmd_query)

    s = sub.add_parser("sql", help="run read-only SQL over the table `metrics` ('-' = stdin)")
    s.add_argument("sql")
    s.add_argument("--results", default="results")
    s.add_argument("--format", default="table", choices=["table", "csv", "json"])
    s.set_defaults(func=cmd_sql)

    n = sub.add_parser("networks", help="list the networks a config trains")
    n.add_argument("--configfile", default="config.yaml")
    n.add_argument("--files", action="store_true", help="also each network's file under runs/")
    n.set_defaults(func=cmd_networks)

    v = sub.add_parser("validate", help="check a config (schema, tasks, split) without running")
    v.add_argument("--configfile", default="config.yaml")
    v.set_defaults(func=cmd_validate)

    try:
        from .selection.cli import add_subparsers
    except ImportError:  # the solve is optional for the sweep itself
        pass
    else:
        add_subparsers(sub)
    from .affinity.cli import add_subparser as add_affinity_subparser

    add_affinity_subparser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as err:
        if isinstance(err, ValueError):
            # Imported here, not up front: .config pulls in torch (models), seconds that
            # `select` and `solve-external` never need.
            from .config import ConfigError
            from .datasets import DatasetError

            if not isinstance(err, (ConfigError, DatasetError)):
                raise
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2
    except Exception as err:  # duckdb errors for bad or writing SQL
        if type(err).__module__.startswith("duckdb") or type(err).__module__ == "_duckdb":
            print(f"error: {err}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
