"""sweep.strategy: gradtag through the real Snakemake: the estimation job after the all-in-one
network, the groups of its affinity trained, the estimates table, a rerun that trains nothing,
and bad options refused naming the key."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from pipeline.schema import ESTIMATES, GRADTAG
from workflow import network_files, snakemake, write_config

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
