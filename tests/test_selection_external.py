"""The external results format (docs/external-results.md): reading, checks, and the solve."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from pipeline.selection import run_external
from pipeline.selection.cli import add_subparsers
from pipeline.selection.external import ExternalFormatError, check_external, read_external

DOC = Path(__file__).resolve().parent.parent / "docs" / "external-results.md"


def doc_example(tmp_path) -> Path:
    csv = re.search(r"```csv\n(.*?)```", DOC.read_text(), re.S).group(1)
    path = tmp_path / "example.csv"
    path.write_text(csv)
    return path


def test_documented_example_solves(tmp_path):
    path = doc_example(tmp_path)
    frame = read_external(path)
    assert frame.loc[frame["network"] == "s+d@full", "tasks"].iloc[0] == ["s", "d"]
    run_external(path, {"budgets": [1, 1.5, 2], "random_samples": 20}, tmp_path / "out")
    g = pd.read_parquet(tmp_path / "out" / "groupings.parquet")
    optimal = g[(g["selection_method"] == "optimal") & (g["status"] == "ok")]
    # Budget 1: the two halves (0.5 + 0.5) beat the one pair on validation.
    at1 = optimal[optimal["budget"] == 1]
    assert sorted(at1["networks"].iloc[0]) == ["d@half", "s@half"]
    assert at1["val_total"].iloc[0] == pytest.approx(0.08021 + 0.1739)


def test_minimal_columns_and_diverged_networks(tmp_path):
    frame = pd.DataFrame(
        {
            "network": ["x", "y", "xy", "xy", "xy", "xy"],
            "cost": [1, 1, 1.0004, 1.0004, 1.0004, 1.0004],
            "task": ["a", "b", "a", "b", "a", "b"],
            "val_loss": [0.5, 0.5, 0.1, 0.1, 0.1, 0.1],
            "test_loss": [0.5, 0.5, 0.1, 0.1, 0.1, 0.1],
            "seed": [0, 0, 0, 0, 1, 1],
            "status": ["ok", "ok", "ok", "ok", "diverged", "diverged"],
        }
    )
    path = tmp_path / "r.parquet"
    frame.to_parquet(path)
    run_external(path, {"budgets": [2], "random_samples": 10}, tmp_path / "out")
    g = pd.read_parquet(tmp_path / "out" / "groupings.parquet")
    # The better pair diverged in seed 1: excluded, so the singles are chosen.
    assert sorted(g[g["selection_method"] == "optimal"]["networks"].iloc[0]) == ["x", "y"]
    assert "`xy` (seeds [1])" in (tmp_path / "out" / "summary.md").read_text()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.drop(columns=["val_loss"]), "missing required column"),
        (lambda f: f.assign(colour="red"), "unknown column"),
        (lambda f: f.assign(cost=[0.5, 0.5, 1.0, 1.0, 1.0, 2.0]), "more than one cost"),
        (lambda f: f.assign(status="maybe"), "status must be"),
        (lambda f: pd.concat([f, f.iloc[:1]]), "duplicate rows"),
        (lambda f: f.assign(tasks="s"), "declares tasks"),
        (lambda f: f.assign(test_loss=float("nan")), "test_loss must be finite"),
    ],
)
def test_format_errors_name_the_problem(tmp_path, change, message):
    frame = read_external(doc_example(tmp_path))
    with pytest.raises(ExternalFormatError, match=message):
        check_external(change(frame))


def test_cli_solve_external(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    add_subparsers(parser.add_subparsers(dest="command"))
    path = doc_example(tmp_path)
    args = parser.parse_args(
        [
            "solve-external",
            str(path),
            "--configfile",
            "",
            "--budgets",
            "1,2",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert args.func(args) == 0
    assert (tmp_path / "o" / "summary.md").exists()
    # A budget below the cheapest cover (two halves = 1.0) is a clear error, exit code 2.
    args = parser.parse_args(
        [
            "solve-external",
            str(path),
            "--configfile",
            "",
            "--budgets",
            "0.6",
            "--out",
            str(tmp_path / "p"),
        ]
    )
    assert args.func(args) == 2
    assert "below the cheapest cover" in capsys.readouterr().err
