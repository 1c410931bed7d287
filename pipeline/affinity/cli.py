"""Subcommand ``groups-from-affinity`` of ``taskgroup`` (docs/affinity.md)."""

from __future__ import annotations

import argparse
import json
import sys


def parse_groups(text: str) -> list[int]:
    """``"3"``, ``"1,2,4"`` or ``"1..5"`` (inclusive) -> numbers of groups."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if ".." in part:
            lo, hi = part.split("..", 1)
            out.extend(range(int(lo), int(hi) + 1))
        elif part:
            out.append(int(part))
    if not out or min(out) < 1:
        raise ValueError(f"--groups {text!r}: need numbers >= 1, e.g. 1..5 or 2,3")
    return list(dict.fromkeys(out))


def cmd_groups_from_affinity(args: argparse.Namespace) -> int:
    from . import AffinityFormatError, candidate_groups, read_affinity

    try:
        tasks = None
        if args.tasks_file:
            with open(args.tasks_file, encoding="utf-8") as fh:
                tasks = [line.rstrip("\n") for line in fh if line.rstrip("\n")]
        ks = parse_groups(args.groups)
        affinity = read_affinity(args.path, tasks=tasks)
        singleton = "diagonal" if args.singleton == "diagonal" else float(args.singleton)
        groupings = candidate_groups(
            affinity, ks, method=args.method, seed=args.seed, singleton=singleton
        )
    except (AffinityFormatError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    doc = {
        "input": str(args.path),
        "tasks": list(affinity.tasks),
        "method": args.method,
        "groupings": [g.to_dict() for g in groupings],
    }
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    if args.out == "-":
        print(text)
    else:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        for g in groupings:
            print(f"k<={g.max_groups}: {g.n_groups} group(s), objective {g.objective:.6g}")
        print(f"wrote {args.out}")
    return 0


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``groups-from-affinity`` on ``taskgroup``'s subparsers."""
    from .clustering import METHODS

    p = subparsers.add_parser(
        "groups-from-affinity",
        help="candidate task groups from an inter-task affinity table (docs/affinity.md)",
    )
    p.add_argument("path", help="long-format affinity: source, target, value[, epoch, steps]")
    p.add_argument("--groups", default="1..5", help="numbers of groups: 1..5, 2,3 or 4")
    p.add_argument("--method", default="auto", choices=list(METHODS))
    p.add_argument("--tasks-file", help="UTF-8 file, one task name per line: order and check")
    p.add_argument(
        "--singleton",
        default="-1e6",
        help="score of a task alone: a number (TAG: -1e6) or 'diagonal' (self-affinity)",
    )
    p.add_argument("--seed", type=int, default=0, help="clustering seed")
    p.add_argument("--out", default="-", help="output JSON file ('-': stdout)")
    p.set_defaults(func=cmd_groups_from_affinity)
