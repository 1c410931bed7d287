"""sweep.strategy: gradtag through the real Snakemake: the estimation job after the all-in-one
network, the groups of its affinity trained, the estimates table, a rerun that trains nothing,
and bad options refused naming the key."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from pipeline.schema import ESTIMATES, GRADTAG
from workflow import network_files, snakemake, snakemake_with_fault, write_config

pytestmark = pytest.mark.slow

GRADTAG_CONFIG = {
    "sweep": {"orders": [1], "all_in_one": True, "sizes": ["full"], "seeds": [0],
              "strategy": "gradtag", "gradtag": {"dim": 16, "epoch": 1}},
    "selection": {"budgets": [1, 2], "controls": False},
}  # fmt: skip


def test_gradtag_loop_estimates_every_pair_then_trains_the_groups(tmp_path) -> None:
    write_config(tmp_path, GRADTAG_CONFIG)
    snakemake(tmp_path)
    results = tmp_path / "results"
    estimate = pq.read_table(results / "estimate/hard_sharing-equal/seed0.parquet")
    assert estimate.schema.equals(GRADTAG, check_metadata=False)
    assert estimate.num_rows == 6 * 2  # every pair of the 4 tasks, both members
    assert set(estimate["meta_epoch"].to_pylist()) == {1}
    assert min(estimate["relative_loss"].to_pylist()) > 0
    decided = json.loads((results / "groups/hard_sharing-equal.json").read_text())
    assert decided["strategy"] == "gradtag"
    groups = [tuple(n["tasks"]) for n in decided["networks"]]
    assert groups and all(len(g) >= 2 for g in groups)
    trained = {tuple(r["tasks"]) for r in pq.read_table(results / "networks.parquet").to_pylist()}
    assert set(groups) <= trained
    table = pq.read_table(results / "estimates.parquet")
    assert table.schema.equals(ESTIMATES, check_metadata=False)
    assert set(table["strategy"].to_pylist()) == {"gradtag"}
    assert (results / "estimate_matrix.png").stat().st_size > 0
    assert "gradtag" in (results / "summary.md").read_text()

    before = network_files(tmp_path)
    proc = snakemake(tmp_path)
    assert network_files(tmp_path) == before
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "options, extra, key",
    [({"epoch": 4}, {}, "sweep.gradtag.epoch"), ({"rige": 1.0}, {}, "rige"),
     ({"size": 5}, {}, "sweep.gradtag.size"),
     ({}, {"model": {"head_hidden": [4]}}, "model.head_hidden"),
     ({}, {"model": {"architecture": "mtan"}}, "model.architecture")],
)  # fmt: skip
def test_bad_gradtag_options_are_refused_naming_the_key(tmp_path, options, extra, key) -> None:
    config = {**GRADTAG_CONFIG, **extra,
              "sweep": {**GRADTAG_CONFIG["sweep"], "gradtag": options}}  # fmt: skip
    write_config(tmp_path, config)
    proc = snakemake(tmp_path, "--dry-run", check=False)
    assert proc.returncode != 0
    assert key in proc.stdout + proc.stderr


FAULTS = {
    # The estimation job raises (a bug, a library's refusal, ...).
    "raises": """
import pipeline.affinity.gradtag as gradtag


def meta_statistics(*args, **kwargs):
    raise ValueError("injected: the gradient statistics raised")


gradtag.meta_statistics = meta_statistics
""",
    # The meta-training diverged: the estimates come out NaN.
    "diverges": """
import pyarrow as pa

import pipeline.affinity.gradtag as gradtag

table_of = gradtag.estimates_table


def estimates_table(*args, **kwargs):
    table = table_of(*args, **kwargs)
    at = table.schema.get_field_index("relative_loss")
    nan = pa.array([float("nan")] * table.num_rows)
    return table.set_column(at, table.schema.field(at), nan)


gradtag.estimates_table = estimates_table
""",
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_failed_gradtag_estimate_is_recorded_and_the_answer_stands(tmp_path, fault) -> None:
    config = {**GRADTAG_CONFIG, "selection": {"budgets": [1, 2]}}  # controls on
    write_config(tmp_path, config)
    proc = snakemake_with_fault(tmp_path, FAULTS[fault])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = tmp_path / "results"
    assert pq.read_metadata(results / "estimate/hard_sharing-equal/seed0.parquet").num_rows == 0
    log = (results / "logs/estimate/hard_sharing-equal/seed0.log").read_text()
    assert "gradtag estimation failed" in log
    assert ("injected: the gradient" if fault == "raises" else "not finite") in log
    decided = json.loads((results / "groups/hard_sharing-equal.json").read_text())
    assert decided["networks"] == [] and decided["controls"] == []
    assert "gradtag estimation failed" in decided["estimate_failed"]
    # The answer over the first stage: the singles and the all-in-one network, nothing else.
    trained = {tuple(r["tasks"]) for r in pq.read_table(results / "networks.parquet").to_pylist()}
    assert {len(t) for t in trained} == {1, 4}
    groupings = pq.read_table(results / "groupings.parquet").to_pandas()
    optimal = groupings[groupings.selection_method == "optimal"]
    assert set(optimal.budget) == {1.0, 2.0} and (optimal.status == "ok").all()
    for name in ("summary.md", "estimates.md"):
        assert "gradtag estimation failed" in (results / name).read_text(), name
    # Recorded means done: a rerun trains and estimates nothing (delete the file to retry).
    again = snakemake_with_fault(tmp_path, FAULTS[fault])
    assert "Nothing to be done" in again.stdout + again.stderr


def test_an_estimate_out_of_memory_fails_the_run_so_a_rerun_tries_again(tmp_path) -> None:
    """Out of memory is the machine's moment, not the estimate's (pipeline.failures): nothing
    is recorded, so the estimate is not taken as done."""
    write_config(tmp_path, {**GRADTAG_CONFIG, "selection": {"budgets": [1, 2]}})
    fault = FAULTS["raises"].replace("ValueError", "MemoryError")
    proc = snakemake_with_fault(tmp_path, fault)
    assert proc.returncode != 0
    assert "MemoryError" in proc.stdout + proc.stderr
    results = tmp_path / "results"
    log = (results / "logs/estimate/hard_sharing-equal/seed0.log").read_text()
    assert "MemoryError: injected" in log and "a rerun tries again" in log
    assert not (results / "estimate/hard_sharing-equal/seed0.parquet").exists()
    assert not (results / "groups/hard_sharing-equal.json").exists()
