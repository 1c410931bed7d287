"""The declared Arrow schema, atomic writes, file checks, collect and the read-only query
connection."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.collect import collect
from pipeline.query import connect, run_query
from pipeline.schema import METRICS, SchemaMismatch, check_file, write_table


def metrics_rows(network: str = "A+B@full", tasks=("A", "B"), epochs: int = 2) -> dict:
    """Columns of a small METRICS table in plain Python/pyarrow default types (int64, double),
    which write_table must cast to the declared ones."""
    rows = [
        (task, split, epoch, metric)
        for task in tasks
        for split in ("train", "val", "test")
        for epoch in range(1, epochs + 1)
        for metric in ("loss", "roc_auc")
    ]
    n = len(rows)
    return {
        "dataset": ["toy"] * n,
        "network": [network] * n,
        "tasks": [list(tasks)] * n,
        "n_tasks": [len(tasks)] * n,
        "size": [network.split("@")[1]] * n,
        "width": [64] * n,
        "cost": [1.0 + 0.01 * (len(tasks) - 1)] * n,
        "macs": [1000] * n,
        "architecture": ["hard_sharing"] * n,
        "weighting": ["equal"] * n,
        "seed": [0] * n,
        "task": [r[0] for r in rows],
        "task_type": ["binary"] * n,
        "split": [r[1] for r in rows],
        "epoch": [r[2] for r in rows],
        "metric": [r[3] for r in rows],
        "value": [0.5 + 0.01 * i for i in range(n)],
        "n_labelled": [100] * n,
        "status": ["ok"] * n,
        "diverged_epoch": [None] * n,
        "epochs": [epochs] * n,
        "wall_time_s": [0.1] * n,
        "device": ["cpu"] * n,
        "config_hash": ["0" * 64] * n,
        "versions": ["{}"] * n,
    }


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# ----------------------------------------------------------------------------- write_table


def test_write_table_casts_to_the_declared_schema(tmp_path: Path) -> None:
    columns = metrics_rows()
    table = pa.table(dict(reversed(list(columns.items()))))  # columns in the wrong order
    assert table.schema.field("n_tasks").type == pa.int64()
    path = tmp_path / "out" / "net.parquet"
    write_table(table, path, METRICS)
    written = pq.read_table(path)
    assert written.schema.equals(METRICS)  # types and nullability
    assert written.schema.metadata == METRICS.metadata
    assert written.schema.names == METRICS.names
    assert written.column("n_tasks").type == pa.int16()
    assert written.column("epoch").type == pa.int32()
    assert written.column("value").to_pylist() == columns["value"]
    assert written.column("tasks").to_pylist()[0] == ["A", "B"]
    check_file(path, METRICS)
    assert leftovers(path.parent) == []
    assert [p.name for p in path.parent.iterdir()] == ["net.parquet"]


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_write_table_rejects_a_missing_or_extra_column(tmp_path: Path, change: str) -> None:
    columns = metrics_rows()
    if change == "missing":
        del columns["n_labelled"]
    else:
        columns["learning_rate"] = [0.1] * len(columns["task"])
    path = tmp_path / "net.parquet"
    culprit = "n_labelled" if change == "missing" else "learning_rate"
    with pytest.raises(SchemaMismatch, match=culprit) as err:
        write_table(pa.table(columns), path, METRICS)
    assert str(path) in str(err.value)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temp file


def test_write_table_rejects_uncastable_values(tmp_path: Path) -> None:
    columns = metrics_rows()
    columns["n_tasks"] = [70000] * len(columns["task"])  # does not fit int16
    path = tmp_path / "net.parquet"
    with pytest.raises(SchemaMismatch, match="net.parquet"):
        write_table(pa.table(columns), path, METRICS)
    columns = metrics_rows()
    columns["network"] = [None] * len(columns["task"])  # a non-nullable column
    with pytest.raises(SchemaMismatch, match="net.parquet"):
        write_table(pa.table(columns), path, METRICS)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "net.parquet"
    write_table(pa.table(metrics_rows()), path, METRICS)
    before = path.read_bytes()
    bad = metrics_rows()
    del bad["status"]
    with pytest.raises(SchemaMismatch):
        write_table(pa.table(bad), path, METRICS)
    assert path.read_bytes() == before
    # A failure after the temp file exists (the rename onto a directory fails) cleans up too.
    blocked = tmp_path / "blocked.parquet"
    blocked.mkdir()
    (blocked / "keep").write_text("x")
    with pytest.raises(OSError):
        write_table(pa.table(metrics_rows()), blocked, METRICS)
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked.parquet", "net.parquet"]


# ------------------------------------------------------------------------------ check_file


def test_check_file_on_a_truncated_parquet_names_it(tmp_path: Path) -> None:
    path = tmp_path / "net.parquet"
    write_table(pa.table(metrics_rows()), path, METRICS)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SchemaMismatch, match="net.parquet"):
        check_file(path, METRICS)
    with pytest.raises(SchemaMismatch, match="nowhere.parquet"):
        check_file(tmp_path / "nowhere.parquet", METRICS)


def test_check_file_on_another_schema_names_it(tmp_path: Path) -> None:
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), other)
    with pytest.raises(SchemaMismatch, match="other.parquet"):
        check_file(other, METRICS)
    # Same column names, one type differs (epoch as int64 instead of int32).
    retyped = tmp_path / "retyped.parquet"
    table = pa.table(metrics_rows()).select(METRICS.names).cast(METRICS)
    i = METRICS.get_field_index("epoch")
    table = table.set_column(i, pa.field("epoch", pa.int64(), nullable=False),
                             table.column("epoch").cast(pa.int64()))  # fmt: skip
    pq.write_table(table, retyped)
    with pytest.raises(SchemaMismatch, match="retyped.parquet"):
        check_file(retyped, METRICS)


# --------------------------------------------------------------------------------- collect


@pytest.fixture()
def two_networks(tmp_path: Path) -> list[str]:
    files = []
    for name, tasks in (("B@full", ("B",)), ("A+B@full", ("A", "B"))):
        path = tmp_path / "runs" / f"{name}.parquet"
        write_table(pa.table(metrics_rows(name, tasks)), path, METRICS)
        files.append(str(path))
    return files


def test_collect_writes_plain_parquet_and_duckdb(tmp_path: Path, two_networks: list[str]) -> None:
    parquet_out, duckdb_out = tmp_path / "metrics.parquet", tmp_path / "sweep.duckdb"
    collect(two_networks, str(parquet_out), str(duckdb_out))
    expected_rows = 1 * 3 * 2 * 2 + 2 * 3 * 2 * 2
    # Plain pyarrow and pandas read it, with no code of ours.
    table = pq.read_table(parquet_out)
    assert table.num_rows == expected_rows
    assert table.schema.equals(METRICS)
    frame = pd.read_parquet(parquet_out)
    assert sorted(frame["network"].unique()) == ["A+B@full", "B@full"]
    assert frame.groupby("network").size().to_dict() == {"A+B@full": 24, "B@full": 12}
    # A stable order: by network, task, split, epoch, metric.
    keys = list(
        zip(frame["network"], frame["task"], frame["split"], frame["epoch"], frame["metric"])
    )
    assert keys == sorted(keys)
    with duckdb.connect(str(duckdb_out), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM metrics").fetchone()[0] == expected_rows
        total = con.execute("SELECT sum(value) FROM metrics").fetchone()[0]
    assert total == pytest.approx(frame["value"].sum())
    assert leftovers(tmp_path) == []
    assert not (tmp_path / "sweep.duckdb.wal").exists()
    # And the query helpers read it.
    result = run_query(duckdb_out, "SELECT count(DISTINCT network) AS n FROM metrics")
    assert result["n"].tolist() == [2]


def test_collect_refuses_a_corrupt_file_naming_it(tmp_path: Path, two_networks: list[str]) -> None:
    bad = Path(two_networks[0])
    bad.write_bytes(bad.read_bytes()[:100])
    parquet_out, duckdb_out = tmp_path / "metrics.parquet", tmp_path / "sweep.duckdb"
    with pytest.raises(SchemaMismatch, match=bad.name.replace("+", r"\+")):
        collect(two_networks, str(parquet_out), str(duckdb_out))
    assert not parquet_out.exists() and not duckdb_out.exists()


def test_collect_refuses_a_file_of_another_schema(tmp_path: Path, two_networks: list[str]) -> None:
    stray = tmp_path / "runs" / "stray.parquet"
    pq.write_table(pa.table({"network": ["x"], "value": [1.0]}), stray)
    with pytest.raises(SchemaMismatch, match="stray.parquet"):
        collect([*two_networks, str(stray)], str(tmp_path / "m.parquet"), str(tmp_path / "s.db"))


# ----------------------------------------------------------------------------------- query


@pytest.fixture()
def database(tmp_path: Path, two_networks: list[str]) -> Path:
    path = tmp_path / "sweep.duckdb"
    collect(two_networks, str(tmp_path / "metrics.parquet"), str(path))
    return path


def test_query_connection_reads(database: Path) -> None:
    with connect(database) as con:
        assert con.execute("SELECT count(*) FROM metrics").fetchone()[0] == 36


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM metrics",
        "UPDATE metrics SET value = 0",
        "CREATE TABLE t AS SELECT 1 AS a",
        "DROP TABLE metrics",
        "INSERT INTO metrics SELECT * FROM metrics",
    ],
)
def test_query_connection_cannot_modify(database: Path, sql: str) -> None:
    with connect(database) as con, pytest.raises(duckdb.InvalidInputException, match="read-only"):
        con.execute(sql)
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM metrics").fetchone()[0] == 36


def test_query_connection_cannot_touch_other_files(database: Path, tmp_path: Path) -> None:
    target = tmp_path / "leak.csv"
    outside = tmp_path / "metrics.parquet"
    with connect(database) as con:
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"COPY metrics TO '{target}'")
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"SELECT count(*) FROM read_parquet('{outside}')")
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"ATTACH '{tmp_path / 'other.duckdb'}' AS other")
        # The lock cannot be lifted from inside a query.
        with pytest.raises(duckdb.InvalidInputException):
            con.execute("SET enable_external_access = true")
        with pytest.raises(duckdb.InvalidInputException, match="lock_configuration"):
            con.execute("SET lock_configuration = false")
    assert not target.exists()
    assert not (tmp_path / "other.duckdb").exists()


def test_query_connect_on_a_missing_database(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.duckdb"):
        connect(tmp_path / "nothing.duckdb")
    assert not (tmp_path / "nothing.duckdb").exists()


def test_sql_sees_every_result_table_beside_the_database(database: Path) -> None:
    # The tables the workflow writes next to sweep.duckdb, under their own names.
    for name, column in (("groupings", "budget"), ("split", "row"), ("estimates", "network")):
        pq.write_table(pa.table({column: [1, 2, 3]}), database.parent / f"{name}.parquet")
    from pipeline.query import tables

    assert tables(database) == ["estimates", "groupings", "metrics", "networks", "split"]
    joined = run_query(
        database,
        "SELECT (SELECT count(*) FROM groupings) AS g, (SELECT sum(row) FROM split) AS s, "
        "(SELECT count(*) FROM metrics) AS m",
    )
    assert joined.iloc[0].tolist() == [3, 6, 36]
    # Still no other file: the lock holds with the tables registered.
    with connect(database) as con, pytest.raises(duckdb.PermissionException):
        con.execute(f"SELECT * FROM read_parquet('{database.parent / 'groupings.parquet'}')")


def test_sql_csv_has_no_index_and_a_closed_pipe_is_quiet(database: Path) -> None:
    import subprocess
    import sys

    from pipeline.cli import main

    cli = [sys.executable, "-m", "pipeline", "sql", "--results", str(database.parent)]
    out = subprocess.run(
        [*cli, "SELECT DISTINCT network FROM metrics ORDER BY 1", "--format", "csv"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.splitlines() == ["network", "A+B@full", "B@full"]
    # Far more rows than a pipe buffer holds, read by `head -n 2`: no BrokenPipeError.
    piped = subprocess.run(
        " ".join([*cli, "'SELECT * FROM range(200000)'", "--format csv", "| head -n 2"]),
        shell=True, capture_output=True, text=True,
    )  # fmt: skip
    assert piped.stdout.splitlines() == ["range", "0"]
    assert piped.stderr == ""
    assert main(["sql", "--results", str(database.parent), "SELECT 1 AS one"]) == 0
