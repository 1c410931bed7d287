"""Collect the per-network files into one table: ``metrics.parquet`` (for DuckDB, pandas,
polars, without our code) and ``sweep.duckdb`` (the same rows, for the read-only query CLI),
plus ``networks.parquet``, the manifest of which file holds which network's task list."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from .io import atomic_write
from .schema import METRICS, NETWORKS, SchemaMismatch, check_file, write_table

# Per-network columns: equal on every row of a network file, so its first row says them.
MANIFEST_COLUMNS = ("network", "tasks", "n_tasks", "size", "architecture", "weighting", "seed")


def manifest(files: Sequence[str], tables: Sequence[pa.Table]) -> pa.Table:
    """One NETWORKS row per network file: its path, stem and the network it holds."""
    rows: dict[str, list] = {name: [] for name in NETWORKS.names}
    for path, table in zip(files, tables):
        rows["file"].append(str(path))
        rows["stem"].append(Path(path).name.removesuffix(".parquet"))
        first = table.select(list(MANIFEST_COLUMNS)).slice(0, 1).to_pylist()
        if not first:
            raise SchemaMismatch(f"{path}: no rows")
        for name in MANIFEST_COLUMNS:
            rows[name].append(first[0][name])
    return pa.table(rows, schema=NETWORKS)


def collect(
    files: Sequence[str], parquet_out: str, duckdb_out: str, networks_out: str | None = None
) -> pa.Table:
    """Check every file against the declared schema (naming any bad one), concatenate them in
    a stable order and write the outputs atomically (``networks_out``: the manifest)."""
    if not files:
        raise ValueError("collect: no network files to collect")
    files = sorted(files)
    tables = []
    for path in files:
        check_file(path, METRICS)
        tables.append(pq.read_table(path, schema=METRICS))
    networks = manifest(files, tables)
    if networks_out is not None:
        write_table(networks, networks_out, NETWORKS)
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
                con.register("manifest", networks)
                con.execute("CREATE TABLE networks AS SELECT * FROM manifest")
                con.execute("CHECKPOINT")
        finally:
            wal = f"{tmp}.wal"
            if os.path.exists(wal):
                os.unlink(wal)
    return table


__all__ = ["collect", "SchemaMismatch"]
