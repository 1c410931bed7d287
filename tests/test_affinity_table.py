"""The long affinity format: reading, epoch averaging and the errors (pipeline.affinity.table),
and the groups-from-affinity command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.affinity import Affinity, AffinityFormatError, affinity_from_frame, read_affinity
from pipeline.cli import main

NAMES = ["a, b", "x (y)", "p+q/r", "émoji ✓", "NA"]


def _frame(tasks, rng, diagonal=False):
    rows = [(s, t, float(rng.normal())) for s in tasks for t in tasks if diagonal or s != t]
    return pd.DataFrame(rows, columns=["source", "target", "value"])


def test_round_trip_odd_names_csv_and_parquet(tmp_path):
    rng = np.random.default_rng(0)
    frame = _frame(NAMES, rng, diagonal=True)
    for path in (tmp_path / "a.csv", tmp_path / "a.parquet"):
        if path.suffix == ".csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        aff = read_affinity(path)
        assert aff.tasks == tuple(NAMES)
        i, j = NAMES.index("p+q/r"), NAMES.index("NA")
        want = frame[(frame.source == "p+q/r") & (frame.target == "NA")].value.item()
        assert aff.matrix[i, j] == pytest.approx(want)
        assert aff.recipient_table()[j, i] == pytest.approx(want)


def test_task_list_orders_and_rejects_unknown():
    frame = _frame(["s", "d", "n"], np.random.default_rng(1))
    aff = affinity_from_frame(frame, tasks=["n", "s", "d"])
    assert aff.tasks == ("n", "s", "d")
    with pytest.raises(AffinityFormatError, match=r"not in the task list: 'n'"):
        affinity_from_frame(frame, tasks=["s", "d"])


def test_missing_pairs_named_with_count():
    frame = _frame([f"t{i}" for i in range(6)], np.random.default_rng(2))
    frame = frame[frame.source != "t0"]
    with pytest.raises(
        AffinityFormatError, match=r"missing \(source, target\).*'t0'->'t1'.*5 in all"
    ):
        affinity_from_frame(frame)
    # a task in the list with no rows at all
    full = _frame(["s", "d"], np.random.default_rng(3))
    with pytest.raises(AffinityFormatError, match=r"'k'->'s'.*4 in all"):
        affinity_from_frame(full, tasks=["s", "d", "k"])


def test_duplicates_and_non_finite_named():
    frame = _frame(["s", "d", "n"], np.random.default_rng(4))
    with pytest.raises(AffinityFormatError, match=r"duplicate rows for 's'->'d'"):
        affinity_from_frame(pd.concat([frame, frame.iloc[[0]]]))
    bad = frame.copy()
    bad.loc[bad.index[1], "value"] = np.nan
    with pytest.raises(AffinityFormatError, match=r"non-finite \(NaN\) value for 's'->'n'"):
        affinity_from_frame(bad)
    bad.loc[bad.index[1], "value"] = np.inf
    with pytest.raises(AffinityFormatError, match=r"infinite value for 's'->'n'"):
        affinity_from_frame(bad)
    empty = frame.copy()
    empty.loc[empty.index[0], "source"] = ""
    with pytest.raises(AffinityFormatError, match="empty task name in column source"):
        affinity_from_frame(empty)
    with pytest.raises(AffinityFormatError, match="missing required column"):
        affinity_from_frame(frame.drop(columns="target"))


def test_epochs_weighted_by_steps_and_nan_epochs_skipped():
    rows = []
    for epoch, (v, steps) in enumerate([(1.0, 10), (4.0, 30), (np.nan, 0)]):
        rows += [("s", "d", epoch, v, steps), ("d", "s", epoch, 2.0 * (epoch + 1), 1)]
    frame = pd.DataFrame(rows, columns=["source", "target", "epoch", "value", "steps"])
    frame.loc[5, "value"] = np.nan  # d->s in epoch 2: no finite step
    aff = affinity_from_frame(frame)
    assert aff.matrix[0, 1] == pytest.approx((1.0 * 10 + 4.0 * 30) / 40)
    assert aff.matrix[1, 0] == pytest.approx((2.0 + 4.0) / 2)
    # a pair with no finite epoch at all is an error naming it
    frame.loc[frame.source == "s", "value"] = np.nan
    with pytest.raises(AffinityFormatError, match=r"NaN\) value in every epoch for 's'->'d'"):
        affinity_from_frame(frame)
    # same (source, target, epoch) twice
    dup = pd.DataFrame(
        [("s", "d", 0, 1.0), ("s", "d", 0, 2.0), ("d", "s", 0, 1.0)],
        columns=["source", "target", "epoch", "value"],
    )
    with pytest.raises(AffinityFormatError, match=r"duplicate rows \(same epoch\)"):
        affinity_from_frame(dup)


def test_provenance_columns_ignored_and_from_recipient_dict():
    frame = _frame(["s", "d"], np.random.default_rng(5)).assign(run="r1", config_hash="abc")
    assert affinity_from_frame(frame).tasks == ("s", "d")
    aff = Affinity.from_recipient_table(
        ["s", "d"], {"s": {"s": 0, "d": 3.0}, "d": {"s": 5.0, "d": 0}}
    )
    assert aff.matrix[1, 0] == 3.0  # Z(d -> s): table[s][d]
    back = affinity_from_frame(aff.to_frame())
    np.testing.assert_allclose(back.matrix, aff.matrix)


def test_cli_taskonomy_matches_recomputed(tmp_path, capsys):
    data = Path(__file__).parent / "data" / "tag2021"
    raw = json.loads((data / "taskonomy5_tag_affinity.json").read_text())
    aff = Affinity.from_recipient_table(raw["tasks"], raw["matrix"])
    src = tmp_path / "aff.csv"
    aff.to_frame().to_csv(src, index=False)
    out = tmp_path / "groups.json"
    # no self-affinity rows: the diagonal is NaN and must not matter
    aff.to_frame(diagonal=False).to_csv(src, index=False)
    assert main(["groups-from-affinity", str(src), "--groups", "1..3", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    want = json.loads((data / "groupings_recomputed.json").read_text())
    want = want["results"]["taskonomy5"]["TAG"]["by_max_groups"]
    for g in doc["groupings"]:
        exp = want[str(g["max_groups"])]
        assert {frozenset(x) for x in g["groups"]} == {frozenset(x) for x in exp["groups"]}
        assert g["objective_mean_over_tasks"] == pytest.approx(exp["objective_mean_over_tasks"])
    capsys.readouterr()


def test_cli_errors_are_clear(tmp_path, capsys):
    frame = _frame(["s", "d", "n"], np.random.default_rng(6))
    frame = frame.iloc[1:]
    src = tmp_path / "aff.parquet"
    frame.to_parquet(src, index=False)
    assert main(["groups-from-affinity", str(src), "--groups", "2"]) == 2
    assert "missing (source, target) pair(s): 's'->'d'" in capsys.readouterr().err
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("s\nd\n", encoding="utf-8")
    assert main(["groups-from-affinity", str(src), "--tasks-file", str(tasks)]) == 2
    assert "not in the task list: 'n'" in capsys.readouterr().err
    assert main(["groups-from-affinity", str(src), "--groups", "0"]) == 2
    assert "--groups" in capsys.readouterr().err


def test_grouping_json_names_each_tasks_group_by_index(tmp_path, capsys):
    data = Path(__file__).parent / "data" / "tag2021"
    raw = json.loads((data / "taskonomy5_tag_affinity.json").read_text())
    aff = Affinity.from_recipient_table(raw["tasks"], raw["matrix"])
    src, out = tmp_path / "aff.csv", tmp_path / "groups.json"
    aff.to_frame(diagonal=False).to_csv(src, index=False)
    assert main(["groups-from-affinity", str(src), "--groups", "2..3", "--out", str(out)]) == 0
    for grouping in json.loads(out.read_text())["groupings"]:
        groups = grouping["groups"]
        assert set(grouping["serving_group"]) == set(raw["tasks"])
        for task, index in grouping["serving_group"].items():
            assert task in groups[index]
    capsys.readouterr()
