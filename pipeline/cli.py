"""taskgroup: check a config, list its networks, query a collected sweep, solve and export
the grouping at a budget. The sweep itself runs with snakemake (README.md).

"taskgroup" is the command installed with the package; "python -m pipeline" is the same
program under its module name.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

CONFIGFILE_HELP = (
    "the config file(s), merged over ./config.yaml as `snakemake --configfile` run here does "
    "(a later dataset replaces an earlier one whole; docs/own-data.md)"
)

# Named queries that read best as a matrix: (row, column, value).
PIVOTS = {"pairwise_gain": ("task", "partner", "gain")}


def _print(df: pd.DataFrame, fmt: str, pivot: tuple[str, str, str] | None) -> None:
    if pivot and not df.empty:
        row, col, value = pivot
        index = [c for c in df.columns if c not in (row, col, value)] + [row]
        df = df.pivot_table(index=index, columns=col, values=value, aggfunc="first")
    if fmt == "csv":
        # Data columns only: a matrix keeps its row labels as columns, never a bare index.
        (df.reset_index() if pivot else df).to_csv(sys.stdout, index=False)
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

    config = load_config_file(args.configfile, check_data=False, base=_base(args))
    for net in plan_networks(config["dataset"]["tasks"], config["sweep"]):
        # File stems may be hashes (odd or many task names): --files says which is which.
        print(f"{net.size}/{net.stem}.parquet\t{net.name}" if args.files else net.name)
    return 0


def _base(args: argparse.Namespace) -> str | None:
    """The first config layer, ./config.yaml, unless --replace-workflow-config (Snakemake's)."""
    from .config import WORKFLOW_CONFIGFILE

    return None if getattr(args, "replace_workflow_config", False) else WORKFLOW_CONFIGFILE


def _dataset_line(dataset: dict) -> str:
    """The effective dataset: its name, its own keys (a table's path, ...) and its tasks."""
    from .datasets.base import abbreviate

    tasks = dataset["tasks"]
    keys = {k: v for k, v in dataset.items() if k not in ("name", "tasks", "targets")}
    shown = "".join(
        f", {k}: [{abbreviate(v)}]" if isinstance(v, list) else f", {k}: {v}"
        for k, v in keys.items()
    )
    return f"dataset {dataset['name']}{shown}; {len(tasks)} task(s): {abbreviate(tasks)}"


def cmd_validate(args: argparse.Namespace) -> int:
    from .config import config_files, load_config_file, sizes_note
    from .strategies import estimates
    from .sweep import method_key, plan_networks, sweep_methods

    files = config_files(args.configfile, base=_base(args))
    config = load_config_file(
        args.configfile,
        warn=lambda message: print(f"warning: {message}", file=sys.stderr),
        base=_base(args),
    )
    # What snakemake --configfile runs here: the files merged (a later dataset replaces an
    # earlier one whole), then the dataset and its tasks, before anything is counted.
    print(f"config: {' + '.join(map(str, files))}")
    print(_dataset_line(config["dataset"]))
    print(sizes_note(config))
    nets = plan_networks(config["dataset"]["tasks"], config["sweep"])
    seeds, methods = config["sweep"]["seeds"], sweep_methods(config)
    trainings = len(nets) * len(seeds) * len(methods)
    later = (
        f"; sweep.strategy {config['sweep']['strategy']}: more networks decided at run time"
        if estimates(config["sweep"])
        else ""
    )
    print(
        f"valid; {len(config['dataset']['tasks'])} tasks, "
        f"{len(nets)} networks x {len(seeds)} seed(s) x {len(methods)} training method(s) "
        f"({', '.join(method_key(a, w) for a, w in methods)}) = {trainings} trainings{later}"
    )
    if config["dataset"]["name"] == "table":
        from .datasets import load_dataset

        data = load_dataset(config["dataset"])
        for task, labels in data.class_labels.items():
            mapping = ", ".join(f"{i}={label}" for i, label in enumerate(labels))
            print(f"task {task!r}: class ids {mapping}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import (
        export_answer,
        export_weights,
        is_answer_folder,
        read_grouping,
        write_grouping,
    )  # fmt: skip

    grouping = read_grouping(args.results, args.budget, args.selection_method, args.training_method)
    if is_answer_folder(args.out):
        if args.weights:
            raise ValueError(
                f"--weights goes with a .yaml/.json --out; the answer folder {args.out} holds "
                "each network's weights itself"
            )
        from .config import load_config_file

        config = load_config_file(args.configfile, check_data=False)
        export_answer(config, grouping, args.results, args.out, args.seed)
        tasks = sum(len(n["serves"]) for n in grouping["networks"])
        print(
            f"wrote {args.out}: answer.yaml and {len(grouping['networks'])} network folder(s) "
            f"serving {tasks} task(s) at budget {grouping['budget']:g} "
            f"({grouping['selection_method']}); taskgroup predict {args.out} --input FILE"
        )
        return 0
    if args.weights:
        from .config import load_config_file

        config = load_config_file(args.configfile, check_data=False)
        written = export_weights(config, grouping, args.results, args.weights)
        if len(written) < sum(len(n["files"]) for n in grouping["networks"]):
            write_grouping(grouping, args.out)
            print(f"wrote {args.out}; some weights were not saved (see above)", file=sys.stderr)
            return 1
    write_grouping(grouping, args.out)
    tasks = sum(len(n["serves"]) for n in grouping["networks"])
    print(
        f"wrote {args.out}: {len(grouping['networks'])} network(s) serving {tasks} task(s) at "
        f"budget {grouping['budget']:g} ({grouping['selection_method']})"
    )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import predict_file

    rows = predict_file(
        args.folder, args.input, args.out, log=lambda line: print(line, file=sys.stderr)
    )
    print(f"wrote {args.out}: {rows} prediction(s)")
    return 0


def cmd_leftovers(args: argparse.Namespace) -> int:
    from .config import load_config_file
    from .leftovers import delete, find_leftovers

    config = load_config_file(args.configfile, check_data=False)
    found = find_leftovers(config)
    for path in found:
        print(path)
    if args.delete and found:
        delete(config, found)
        print(f"deleted {len(found)} file(s)", file=sys.stderr)
    elif found:
        print(
            f"{len(found)} file(s) the config no longer produces; --delete removes them",
            file=sys.stderr,
        )
    return 0


def _budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskgroup", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    q = sub.add_parser("query", help="run a named query over a collected sweep (read-only)")
    q.add_argument("name", nargs="?", help="query name; omit (or --list) to list them")
    q.add_argument("--list", action="store_true")
    q.add_argument("--results", default="results", help="the sweep's results_dir")
    q.add_argument("--split", default="val", choices=["train", "val", "test"])
    q.add_argument("--format", default="table", choices=["table", "csv", "json"])
    q.add_argument("--long", action="store_true", help="long rows instead of a matrix")
    q.set_defaults(func=cmd_query)

    s = sub.add_parser(
        "sql",
        help="run read-only SQL ('-' = stdin) over the tables metrics, networks and, where "
        "written, groupings, estimates, affinity, split",
    )
    s.add_argument("sql")
    s.add_argument("--results", default="results")
    s.add_argument("--format", default="table", choices=["table", "csv", "json"])
    s.set_defaults(func=cmd_sql)

    n = sub.add_parser("networks", help="list the networks a config trains")
    n.add_argument("--configfile", nargs="+", default="config.yaml", help=CONFIGFILE_HELP)
    n.add_argument(
        "--replace-workflow-config", action="store_true",
        help="leave ./config.yaml out, as snakemake --replace-workflow-config does",
    )  # fmt: skip
    n.add_argument("--files", action="store_true", help="also each network's file under runs/")
    n.set_defaults(func=cmd_networks)

    v = sub.add_parser(
        "validate", help="check a config (schema, tasks, split) and count its trainings"
    )
    v.add_argument("--configfile", nargs="+", default="config.yaml", help=CONFIGFILE_HELP)
    v.add_argument(
        "--replace-workflow-config", action="store_true",
        help="leave ./config.yaml out, as snakemake --replace-workflow-config does",
    )  # fmt: skip
    v.set_defaults(func=cmd_validate)

    x = sub.add_parser(
        "export", help="write the grouping chosen at a budget (YAML/JSON), optionally weights"
    )
    x.add_argument("--budget", type=_budget, required=True)
    x.add_argument(
        "--selection-method", "--method", default="optimal",
        help="optimal (default), esa, hoa, all_in_one, independent, independent_mix, worst",
    )  # fmt: skip
    x.add_argument(
        "--training-method", help="<architecture>-<weighting>, when the sweep has several"
    )
    x.add_argument("--results", default="results", help="the sweep's results_dir")
    x.add_argument(
        "--out", default="grouping.yaml",
        help="a .yaml/.json file: the grouping; any other path: a folder with answer.yaml and "
        "each chosen network ready for `taskgroup predict` (retrained, checked)",
    )  # fmt: skip
    x.add_argument(
        "--seed", type=int, help="with --out DIR: the seed to export (default: the lowest)"
    )
    x.add_argument(
        "--weights", metavar="DIR",
        help="retrain the chosen networks (deterministic: checked against the recorded "
        "losses) and save their weights under DIR",
    )  # fmt: skip
    x.add_argument("--configfile", default="config.yaml", help="the config of the results")
    x.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "predict", help="predict with an exported answer (or network folder): long Parquet"
    )
    p.add_argument("folder", help="what taskgroup export --out DIR wrote (or one network folder)")
    p.add_argument("--input", required=True, help="CSV, Parquet or .npz shaped like training's")
    p.add_argument("--out", default="predictions.parquet")
    p.set_defaults(func=cmd_predict)

    lo = sub.add_parser(
        "leftovers", help="list network files the config no longer produces (--delete: remove)"
    )
    lo.add_argument("--configfile", default="config.yaml")
    lo.add_argument("--delete", action="store_true", help="delete them (and their logs)")
    lo.set_defaults(func=cmd_leftovers)

    try:
        from .selection.cli import add_subparsers
    except ImportError:  # the solve is optional for the sweep itself
        pass
    else:
        add_subparsers(sub)
    from .affinity.cli import add_subparser as add_affinity_subparser

    add_affinity_subparser(sub)
    return parser


def _quiet_broken_pipe() -> int:
    """The reader left (``taskgroup query ... | head``): stop without a traceback. Python's
    recipe: point stdout at devnull so the exit-time flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, as a shell tool killed by the closed pipe reports


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (ValueError, FileNotFoundError, KeyError) as err:
        # Bad input (ConfigError, DatasetError, ExportError, InfeasibleBudget, a malformed
        # number: all ValueErrors) ends in one line, never a traceback; TASKGROUP_DEBUG=1
        # shows it. Nothing imported up front: .config pulls in torch, which `select` and
        # `solve-external` never need.
        if os.environ.get("TASKGROUP_DEBUG"):
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
