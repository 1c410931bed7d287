"""The real Snakemake workflow puts an interval on every gain: each network writes its
per-sample test losses (their mean is its recorded test loss), the select rule writes
gains.parquet and says in summary.md whether each gain is distinguishable from zero, by a paired
bootstrap (one seed) or paired seeds (several), reading only the chosen networks' files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.schema import GAINS, TEST_LOSSES
from workflow import snakemake, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def one_seed(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("gains1")
    write_config(workdir)
    snakemake(workdir)
    return workdir


def test_every_network_writes_per_sample_losses_that_average_to_its_test_loss(
    one_seed: Path,
) -> None:
    results = one_seed / "results"
    runs = sorted((results / "runs").rglob("*.parquet"))
    samples = sorted((results / "samples").rglob("*.parquet"))
    assert [p.relative_to(results / "runs") for p in runs] == [
        p.relative_to(results / "samples") for p in samples
    ]
    metrics = pq.read_table(results / "metrics.parquet").to_pandas()
    final = metrics[
        (metrics.metric == "loss") & (metrics.split == "test") & (metrics.epoch == metrics.epochs)
    ]
    recorded = {(r.network, r.task): r.value for r in final.itertuples()}
    checked = 0
    for path in samples:
        table = pq.read_table(path)
        assert table.schema.equals(TEST_LOSSES, check_metadata=False)
        frame = table.to_pandas()
        for (network, task), part in frame.groupby(["network", "task"]):
            mean = float((part["loss"].astype(float) * part["weight"]).sum() / part["weight"].sum())
            assert mean == pytest.approx(recorded[(network, task)], rel=1e-6)
            checked += 1
    assert checked == len(recorded)


def test_gains_parquet_and_summary_give_intervals(one_seed: Path) -> None:
    results = one_seed / "results"
    gains = pq.read_table(results / "gains.parquet")
    assert gains.schema.equals(GAINS, check_metadata=False)
    frame = gains.to_pandas()
    optimal = frame[(frame.method == "optimal") & (frame.against == "all_in_one")]
    groupings = pq.read_table(results / "groupings.parquet").to_pandas()
    totals = groupings.groupby(["selection_method", "budget"])["test_total"].first()
    assert sorted(optimal.budget) == [1.0, 2.0, 3.0, 4.0]
    for row in optimal.itertuples():
        assert row.how == "bootstrap" and row.n_seeds == 1 and row.resamples == 2000
        expected = totals["all_in_one", row.budget] - totals["optimal", row.budget]
        assert row.difference == pytest.approx(expected, abs=1e-9)
        assert row.low <= row.high
    # Budget 1 buys only the all-in-one network: the same grouping, exactly no gain.
    same = optimal[optimal.budget == 1.0].iloc[0]
    assert same.difference == 0.0 and same.low == 0.0 and same.high == 0.0
    # A larger budget serves tasks by other networks: an interval of real width.
    wide = optimal[optimal.budget == 4.0].iloc[0]
    assert wide.high > wide.low
    # Random is a mean over draws: a difference, no interval, and the reason.
    random = frame[(frame.method == "optimal") & (frame.against == "random")]
    assert random.low.isna().all() and random.how.str.startswith("none: random").all()

    summary = (results / "summary.md").read_text()
    assert "with a 95 % interval" in summary and "paired bootstrap over the test rows" in summary
    assert f"{wide.difference:+.5f} [{wide.low:+.5f}, {wide.high:+.5f}]" in summary
    assert "distinguishable from 0" in summary


def test_select_reads_only_the_chosen_networks_per_sample_files(
    one_seed: Path, tmp_path: Path
) -> None:
    """The per-sample files of networks no answer serves a task by are deleted: the same
    intervals come out (the CLI select finds the manifest and split beside the metrics)."""
    copy = tmp_path / "results"
    shutil.copytree(one_seed / "results", copy)
    groupings = pq.read_table(copy / "groupings.parquet").to_pandas()
    serving = set(groupings["test_network"].dropna())
    networks = pq.read_table(copy / "networks.parquet").to_pandas()
    removed = 0
    for row in networks.itertuples():
        path = copy / "samples" / Path(row.file).relative_to("results/runs")
        if row.network not in serving:
            path.unlink()
            removed += 1
    assert removed > 0
    out = tmp_path / "out"
    config = write_config(tmp_path)
    code = main(
        ["select", "--metrics", str(copy / "metrics.parquet"), "--out", str(out),
         "--configfile", str(config), "--replace-workflow-config"]
    )  # fmt: skip
    assert code == 0
    before = pq.read_table(one_seed / "results" / "gains.parquet").to_pandas()
    after = pq.read_table(out / "gains.parquet").to_pandas()
    assert (after.how == before.how).all()
    np.testing.assert_array_equal(after[["low", "high"]], before[["low", "high"]])


def test_several_seeds_are_paired(tmp_path: Path) -> None:
    write_config(tmp_path, {"sweep": {"seeds": [0, 1, 2]}, "dataset": {"tasks": ["c0t0", "c1t0"]}})
    snakemake(tmp_path)
    frame = pq.read_table(tmp_path / "results" / "gains.parquet").to_pandas()
    paired = frame[frame.how == "seeds_t"]
    assert not paired.empty and set(paired.n_seeds) == {3} and paired.resamples.isna().all()
    assert (paired.low <= paired.difference).all() and (paired.difference <= paired.high).all()
    assert "paired over 3 seeds" in (tmp_path / "results" / "summary.md").read_text()
