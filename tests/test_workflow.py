"""The real Snakemake workflow on the tiny synthetic sweep: outputs, determinism, incremental
reruns, config errors before any job, lint."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pipeline.schema import METRICS
from workflow import REPO, network_files, snakemake, values, write_config

pytestmark = pytest.mark.slow

THREE_TASKS = {"dataset": {"tasks": ["c0t0", "c0t1", "c1t0"]}}


def jobs_planned(proc: subprocess.CompletedProcess, rule: str) -> int:
    text = proc.stdout + proc.stderr
    match = re.search(rf"^{rule}\s+(\d+)\s*$", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def nothing_to_do(proc: subprocess.CompletedProcess) -> bool:
    return "Nothing to be done" in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def three_task_run(tmp_path_factory) -> Path:
    """The tiny sweep over three tasks, run once and shared by the read-only tests."""
    workdir = tmp_path_factory.mktemp("sweep3")
    write_config(workdir, THREE_TASKS)
    snakemake(workdir)
    return workdir


def test_sweep_writes_one_file_per_network_and_a_collected_table(three_task_run: Path) -> None:
    files = network_files(three_task_run)
    # 3 singles x {full, half} + 3 pairs + the all-in-one triple (orders [1, 2]).
    assert len(files) == 3 * 2 + 3 + 1
    assert "hard_sharing-equal/seed0/half/c0t1.parquet" in files
    assert "hard_sharing-equal/seed0/full/c0t0+c0t1+c1t0.parquet" in files

    results = three_task_run / "results"
    collected = pq.read_table(results / "metrics.parquet")
    assert collected.schema.equals(METRICS, check_metadata=False)
    per_network = sum(pq.read_metadata(results / "runs" / f).num_rows for f in files)
    assert collected.num_rows == per_network
    # 3 splits x 3 epochs x 2 metrics per (network, task), plus the task weight per epoch.
    counts = collected.group_by(["network", "task"]).aggregate([("value", "count")])
    assert set(counts["value_count"].to_pylist()) == {3 * 3 * 2 + 3}

    # Readable without our code: plain DuckDB over the Parquet and the DuckDB file.
    n = duckdb.sql(f"SELECT count(*) FROM '{results / 'metrics.parquet'}'").fetchall()[0][0]
    assert n == collected.num_rows
    with duckdb.connect(str(results / "sweep.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM metrics").fetchone()[0] == n

    for log in (results / "logs" / "train").rglob("*.log"):
        assert len([ln for ln in log.read_text().splitlines() if ln.startswith("epoch ")]) == 3
    assert len(list((results / "benchmarks" / "train").rglob("*.tsv"))) == len(files)


def test_sweep_ends_with_the_grouping_solve_and_a_report(three_task_run: Path) -> None:
    results = three_task_run / "results"
    groupings = pq.read_table(results / "groupings.parquet").to_pandas()
    assert {"optimal", "esa", "hoa", "all_in_one"} <= set(groupings["selection_method"])
    assert set(groupings["budget"]) == {1.0, 2.0, 3.0, 4.0}
    assert (results / "budget_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (results / "summary.md").read_text()
    # Real content: at the largest budget, the optimal choice's total and its groups.
    optimal = groupings[(groupings["selection_method"] == "optimal") & (groupings["budget"] == 4.0)]
    assert f"{optimal['test_total'].iloc[0]:.5f}" in summary
    row = next(ln for ln in summary.splitlines() if ln.startswith("| 4 |") and "{" in ln)
    for network in optimal["networks"].iloc[0]:
        tasks = network.split("@")[0].split("+")
        assert "{" + ", ".join(tasks) + "}" in row, (network, row)
    # Which network serves each task: the `network` column, as "`net` → tasks".
    serving = next(ln for ln in summary.splitlines() if ln.startswith("| 4 |") and "→" in ln)
    for network, served in optimal.groupby("network")["task"]:
        assert f"`{network}` → {', '.join(served)}" in serving, (network, serving)
    snakemake(three_task_run, "--report", "report.html")
    html = (three_task_run / "report.html").read_text(errors="replace")
    assert "budget_curve.png" in html


def test_rerun_with_nothing_changed_runs_nothing(three_task_run: Path) -> None:
    assert nothing_to_do(snakemake(three_task_run, "--dry-run"))


def test_adding_a_budget_retrains_nothing(three_task_run: Path, tmp_path: Path) -> None:
    write_config(three_task_run, {**THREE_TASKS, "selection": {"budgets": [1, 2, 3, 4, 5.5]}})
    try:
        proc = snakemake(three_task_run, "--dry-run")
        assert jobs_planned(proc, "train") == 0
        assert jobs_planned(proc, "collect") == 0
        assert jobs_planned(proc, "select") == 1  # the new budget is solved, nothing else
    finally:
        write_config(three_task_run, THREE_TASKS)


def test_adding_a_task_trains_only_networks_containing_it(tmp_path: Path) -> None:
    write_config(tmp_path, THREE_TASKS)
    snakemake(tmp_path)
    before = network_files(tmp_path)

    write_config(tmp_path, {"dataset": {"tasks": ["c0t0", "c0t1", "c1t0", "c1t1"]}})
    dry = snakemake(tmp_path, "--dry-run")
    # c1t1 at two sizes, its 3 pairs, and the new 4-task all-in-one network.
    assert jobs_planned(dry, "train") == 2 + 3 + 1
    snakemake(tmp_path)
    after = network_files(tmp_path)

    unchanged = {f for f in before if after.get(f) == before[f]}
    assert unchanged == set(before), "an existing network was retrained"
    new = set(after) - set(before)
    assert all("c1t1" in f for f in new) and len(new) == 6
    # The collected table is the current sweep: the old 3-task all-in-one is no longer in it.
    collected = set(pq.read_table(tmp_path / "results" / "metrics.parquet")["network"].to_pylist())
    assert len(collected) == len(after) - 1 and "c0t0+c0t1+c1t0@full" not in collected


def test_same_config_and_seed_give_the_same_metrics(three_task_run: Path, tmp_path: Path) -> None:
    write_config(tmp_path, THREE_TASKS)
    snakemake(tmp_path)
    a = values(three_task_run / "results" / "metrics.parquet")
    b = values(tmp_path / "results" / "metrics.parquet")
    assert a == b


def test_seeds_are_an_axis(tmp_path: Path) -> None:
    write_config(tmp_path, {
        "dataset": {"tasks": ["c0t0", "c1t0"]},
        "sweep": {"orders": [1, 2], "seeds": [0, 1], "sizes": ["full"], "all_in_one": False},
    })  # fmt: skip
    snakemake(tmp_path)
    table = pq.read_table(tmp_path / "results" / "metrics.parquet").to_pandas()
    assert sorted(table["seed"].unique()) == [0, 1]
    final = table[(table.metric == "loss") & (table.split == "test") & (table.epoch == 3)]
    by_seed = final.pivot_table(index=["network", "task"], columns="seed", values="value")
    assert len(by_seed) == 4  # 2 singles + the pair's 2 tasks
    assert (by_seed[0] != by_seed[1]).all(), "seeds 0 and 1 trained identically"


def test_bad_config_fails_before_any_job_naming_the_key(tmp_path: Path) -> None:
    write_config(tmp_path, {"training": {"epochs": 0}})
    proc = snakemake(tmp_path, check=False)
    assert proc.returncode != 0
    assert "training.epochs" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()

    write_config(tmp_path, {"dataset": {"tasks": ["c0t0", "nope"]}})
    proc = snakemake(tmp_path, check=False)
    assert proc.returncode != 0 and "nope" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_divergent_network_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    write_config(tmp_path, {
        "dataset": {"tasks": ["c0t0", "c1t0"]},
        "sweep": {"orders": [1, 2], "sizes": ["full"], "all_in_one": False},
        "training": {"lr": 1.0e30},
    })  # fmt: skip
    snakemake(tmp_path, "collect")
    nets = duckdb.sql(
        f"SELECT DISTINCT network, status, diverged_epoch "
        f"FROM '{tmp_path / 'results' / 'metrics.parquet'}'"
    ).fetchall()
    assert len(nets) == 3
    assert {status for _, status, _ in nets} == {"diverged"}
    assert all(epoch is not None for *_, epoch in nets)
    # With every network diverged there is nothing to deploy: the solve says so, clearly.
    proc = snakemake(tmp_path, check=False)
    assert proc.returncode != 0
    assert "no candidate networks (all diverged" in proc.stdout + proc.stderr


def test_query_cli_on_a_real_sweep(three_task_run: Path) -> None:
    results = str(three_task_run / "results")
    run = [sys.executable, "-m", "pipeline"]
    out = subprocess.run(
        [*run, "query", "pairwise_gain", "--results", results, "--format", "csv"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout
    header = out.splitlines()[0]
    assert "c0t0" in header and "c1t0" in header  # a task x task matrix
    write = subprocess.run(
        [*run, "sql", "DROP TABLE metrics", "--results", results],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert write.returncode == 2 and "read-only" in write.stderr
    count = subprocess.run(
        [
            *run,
            "sql",
            "SELECT count(*) AS n FROM metrics",
            "--results",
            results,
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout
    assert '"n":' in count


def test_lint_is_clean(three_task_run: Path) -> None:
    proc = snakemake(three_task_run, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(
    shutil.which("snakefmt") is None and not (Path(sys.executable).parent / "snakefmt").exists(),
    reason="snakefmt not installed",
)
def test_snakefmt_is_clean() -> None:
    exe = shutil.which("snakefmt") or str(Path(sys.executable).parent / "snakefmt")
    files = [str(REPO / "Snakefile"), *map(str, sorted((REPO / "rules").glob("*.smk")))]
    proc = subprocess.run([exe, "--check", *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
