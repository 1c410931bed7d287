"""The closed loop through the real Snakemake (sweep.strategy: tag): estimation first, a
checkpoint decides the candidate groups, only those are trained, the solve runs over measured
results, and reruns stay incremental."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.schema import AFFINITY, ESTIMATES
from pipeline.sweep import Network
from workflow import network_files, snakemake, write_config

pytestmark = pytest.mark.slow

TAG = {"sweep": {"orders": [1, 2], "all_in_one": True, "sizes": ["full", "half"],
                 "seeds": [0], "strategy": "tag", "tag": {"every": 1}},
       "selection": {"budgets": [1, 2]}}  # fmt: skip


def _decided_groups(workdir: Path) -> list[tuple[str, ...]]:
    decided = json.loads(
        (workdir / "results/groups/hard_sharing-equal.json").read_text(encoding="utf-8")
    )
    return [tuple(n["tasks"]) for n in decided["networks"]]


def _controls(workdir: Path) -> list[dict]:
    decided = json.loads(
        (workdir / "results/groups/hard_sharing-equal.json").read_text(encoding="utf-8")
    )
    return decided.get("controls", [])


def _trained_task_sets(workdir: Path) -> set[tuple[tuple[str, ...], str]]:
    table = pq.read_table(workdir / "results/networks.parquet").to_pylist()
    return {(tuple(row["tasks"]), row["size"]) for row in table}


def test_tag_loop_trains_only_the_decided_groups_then_reruns_incrementally(tmp_path) -> None:
    write_config(tmp_path, TAG)
    snakemake(tmp_path)
    results = tmp_path / "results"
    tasks = ("c0t0", "c0t1", "c1t0", "c1t1")

    affinity = pq.read_table(results / "affinity.parquet")
    assert affinity.schema.equals(AFFINITY, check_metadata=False)
    assert affinity.num_rows == 4 * 4 * 3  # every pair, every epoch (3)
    assert min(affinity["steps"].to_pylist()) > 0

    # Budget 2 buys at most two groups: the planted clusters (tasks c<cluster>t<k>).
    decided = _decided_groups(tmp_path)
    assert ("c0t0", "c0t1") in decided and ("c1t0", "c1t1") in decided
    assert all(len(c) >= 2 for c in decided)
    # The random controls: one per decided group beyond the first stage, of its size.
    controls = _controls(tmp_path)
    second = sorted(len(c) for c in decided if c != tasks)
    assert sorted(len(c["tasks"]) for c in controls) == second
    assert all(len(c["matches"]) == len(c["tasks"]) for c in controls)
    # Trained: the singles at both sizes, the all-in-one (the estimation run), the decided
    # groups and the controls; no other pair or triple.
    expected = {((t,), s) for t in tasks for s in ("full", "half")} | {(tasks, "full")}
    expected |= {(c, "full") for c in decided}
    expected |= {(tuple(c["tasks"]), "full") for c in controls}
    assert _trained_task_sets(tmp_path) == expected

    estimates = pq.read_table(results / "estimates.parquet")
    assert estimates.schema.equals(ESTIMATES, check_metadata=False)
    assert {tuple(t) for t in estimates["tasks"].to_pylist()} == set(decided)
    assert all(v is not None for v in estimates["measured_test_gain"].to_pylist())
    # Readable units, stated: TAG's ~1e-4 affinities in parts per million, gains in %.
    text = (results / "estimates.md").read_text(encoding="utf-8")
    assert set(estimates["estimate_unit"].to_pylist()) == {
        "ppm of the member's loss per lookahead step"
    }
    assert "unit: **ppm" in text and "measured val gain (%)" in text and "+0.0000" not in text
    assert min(abs(v) for v in estimates["estimated_benefit"].to_pylist()) > 1
    assert (results / "estimate_matrix.png").stat().st_size > 0
    # The solve ran over measured results: OS at budget 2 may use a candidate pair.
    groupings = pq.read_table(results / "groupings.parquet").to_pandas()
    assert {1.0, 2.0} <= set(groupings["budget"])
    # The control's own exact solve at every budget, over its pool only: never a decided
    # group that is not also a control; the strategy's answer never a control-only network.
    control = groupings[groupings["selection_method"] == "control"]
    assert set(control["budget"]) == {1.0, 2.0} and (control["status"] == "ok").all()
    names = {Network(tuple(c["tasks"]), "full").name for c in controls}
    only_decided = {Network(c, "full").name for c in decided if c != tasks} - names
    assert not {n for ns in control["networks"] for n in ns} & only_decided
    optimal = groupings[groupings["selection_method"] == "optimal"]
    assert not {n for ns in optimal["networks"] for n in ns} & (names - only_decided)
    summary = (results / "summary.md").read_text(encoding="utf-8")
    assert "Against a random control (tag)" in summary and "share earned" in summary
    assert "Controls' compute: 2 network(s) x 1 seed(s) = 2 training(s)" in summary
    # The summary names the strategy and what is measured; HOA (no pairs) is left out, said once.
    assert "Strategy: **tag**" in summary and "below is **measured**" in summary
    assert summary.count("left out: Standley's HOA") == 1
    assert set(groupings[groupings["selection_method"] == "hoa"]["status"]) == {"unavailable"}

    # Nothing changed: nothing to do.
    before = network_files(tmp_path)
    proc = snakemake(tmp_path, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr

    # A larger budget: the checkpoint re-decides; only new groups train, none retrains.
    write_config(tmp_path, {**TAG, "selection": {"budgets": [1, 2, 3]}})
    snakemake(tmp_path)
    after = network_files(tmp_path)
    assert all(after[f] == mtime for f, mtime in before.items())
    new = set(after) - set(before)
    assert {(c, "full") for c in _decided_groups(tmp_path)} <= _trained_task_sets(tmp_path)
    assert all("/full/" in f for f in new)


def test_sampled_loop_trains_subsets_then_the_groups_of_their_affinity(tmp_path) -> None:
    sampled = {"sweep": {**TAG["sweep"], "strategy": "sampled", "all_in_one": False,
                         "sampled": {"size": 3, "seed": 0}},
               "selection": {"budgets": [1, 2]}}  # fmt: skip
    write_config(tmp_path, sampled)
    snakemake(tmp_path)
    trained = _trained_task_sets(tmp_path)
    # First stage: singles at both sizes and the sampled 3-task subsets (every pair covered).
    subsets = {t for t, _ in trained if len(t) == 3}
    assert subsets and all(
        any({a, b} <= set(s) for s in subsets)
        for a, b in [("c0t0", "c0t1"), ("c0t0", "c1t1"), ("c1t0", "c1t1")]
    )
    decided = _decided_groups(tmp_path)
    assert decided and {(c, "full") for c in decided} <= trained
    assert not (tmp_path / "results/affinity.parquet").exists()  # no TAG estimation here
    estimates = pq.read_table(tmp_path / "results/estimates.parquet").to_pandas()
    assert set(estimates["strategy"]) == {"sampled"}


def test_sampled_with_too_few_subsets_is_refused_naming_the_key(tmp_path) -> None:
    bad = {"sweep": {**TAG["sweep"], "strategy": "sampled", "sampled": {"size": 2, "subsets": 2}}}
    write_config(tmp_path, bad)
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert "sweep.sampled.subsets" in proc.stdout + proc.stderr
    assert "need m >= 6" in proc.stdout + proc.stderr


def test_pairs_loop_trains_what_hoa_picks_from_the_pairs(tmp_path) -> None:
    pairs = {"sweep": {**TAG["sweep"], "strategy": "pairs", "all_in_one": False},
             "selection": {"budgets": [2, 3], "controls": False}}  # fmt: skip
    write_config(tmp_path, pairs)
    snakemake(tmp_path)
    trained = _trained_task_sets(tmp_path)
    decided = _decided_groups(tmp_path)
    # HOA only adds task sets of 3+ tasks; each is then trained for real.
    assert decided and all(len(c) >= 3 for c in decided)
    assert {(c, "full") for c in decided} <= trained
    assert {len(t) for t, _ in trained} == {1, 2} | {len(c) for c in decided}
    estimates = pq.read_table(tmp_path / "results/estimates.parquet").to_pandas()
    # selection.controls off: no control is drawn, trained or solved.
    assert _controls(tmp_path) == []
    groupings = pq.read_table(tmp_path / "results/groupings.parquet").to_pandas()
    assert "control" not in set(groupings["selection_method"])
    assert "random control" not in (tmp_path / "results/summary.md").read_text(encoding="utf-8")
    # HOA's estimate is a validation gain, like the measured one.
    assert estimates["estimated_benefit"].notna().all()
    assert estimates["measured_val_gain"].notna().all()
