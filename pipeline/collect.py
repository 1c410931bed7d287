"""Collect the per-network files into one table: ``metrics.parquet`` (for DuckDB, pandas,
polars, without our code) and ``sweep.duckdb`` (the same rows, for the read-only query CLI)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from .io import atomic_write
from .schema import METRICS, SchemaMismatch, check_file, write_table


def collect(files: Sequence[str], parquet_out: str, duckdb_out: str) -> pa.Table:
    """Check every file against the declared schema (naming any bad one), concatenate them in
    a stable order and write both outputs atomically."""
    if not files:
        raise ValueError("collect: no network files to collect")
    tables = []
    for path in sorted(files):
        check_file(path, METRICS)
        tables.append(pq.read_table(path, schema=METRICS))
    table = pa.concat_tables(tables)
    keys = ["architecture", "weighting", "seed", "network", "task", "split", "epoch", "metric"]
    table = table.sort_by([(k, "ascending") for k in keys])
    write_table(table, parquet_out, METRICS)

    with atomic_write(duckdb_out) as tmp:
        tmp.unlink()  # DuckDB creates its own file; an empty one is not a database
        try:
            with duckdb.connect(str(tmp)) as con:
                con.register("collected", table)
                con.execute("CREATE TABLE metrics AS SELECT * FROM collected")
                con.execute("CHECKPOINT")
        finally:
            wal = f"{tmp}.wal"
            if os.path.exists(wal):
                os.unlink(wal)
    return table


__all__ = ["collect", "SchemaMismatch"]
