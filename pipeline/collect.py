"""Collect the per-network files into one table: ``metrics.parquet`` (for DuckDB, pandas,
polars, without our code) and ``sweep.duckdb`` (the same rows, for the read-only query CLI),
plus ``networks.parquet``, the manifest of which file holds which network's task list."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from .io import atomic_write
from .schema import METRICS, NETWORKS, SchemaMismatch, check_file, write_table
from .sweep import Network

# Per-network columns: equal on every row of a network file, so its first row says them.
MANIFEST_COLUMNS = ("network", "tasks", "n_tasks", "size", "architecture", "weighting", "seed")
# The collected order. A file holds one (architecture, weighting, seed, network), so ordering
# the files by those and each file by the rest gives the whole order one file at a time.
FILE_KEYS = ("architecture", "weighting", "seed", "network")
ROW_KEYS = ("task", "split", "epoch", "metric")
# Row-group size of the collected Parquet: small network files are batched up to this.
ROW_GROUP_ROWS = 100_000


def _file_key(path: str) -> tuple:
    """The first row's FILE_KEYS, read without the task-list column."""
    parquet = pq.ParquetFile(path)
    if parquet.metadata.num_rows == 0:
        raise SchemaMismatch(f"{path}: no rows")
    first = parquet.read_row_group(0, columns=list(FILE_KEYS)).slice(0, 1).to_pylist()[0]
    return tuple(first[k] for k in FILE_KEYS)


def collect(
    files: Sequence[str],
    parquet_out: str,
    duckdb_out: str,
    networks_out: str | None = None,
    may_fail: Callable[[str, Network], bool] = lambda path, network: False,
) -> int:
    """Check every file against the declared schema (naming any bad one), write them as one
    table in a stable order, the same rows as ``sweep.duckdb`` and (``networks_out``) the
    manifest of which file holds which network; all atomically. Returns the row count.

    A file that records a failed training (status "failed") is refused unless
    ``may_fail(path, network)``: only a random control's training is recorded as failed, and
    a file written in that role must not stand in for a network that now has another (a later
    budget or strategy made it a decided group or a first-stage network).

    Streams file by file: a 617-task network repeats its task list on each of its ~4,000 rows
    per epoch, so holding every file at once would cost memory quadratic in the task count."""
    if not files:
        raise ValueError("collect: no network files to collect")
    for path in files:
        check_file(path, METRICS)
    ordered = sorted(files, key=lambda path: (_file_key(path), path))

    manifest: dict[str, list] = {name: [] for name in NETWORKS.names}
    rows = 0
    with atomic_write(parquet_out) as tmp:
        with pq.ParquetWriter(tmp, METRICS, compression="zstd") as writer:
            pending: list[pa.Table] = []
            for path in ordered:
                table = pq.read_table(path, schema=METRICS)
                table = table.sort_by([(k, "ascending") for k in ROW_KEYS])
                first = table.select(list(MANIFEST_COLUMNS)).slice(0, 1).to_pylist()[0]
                network = Network(tuple(first["tasks"]), first["size"])
                if "failed" in table.column("status").unique().to_pylist() and not may_fail(
                    str(path), network
                ):
                    raise ValueError(
                        f"{path}: records a failed training (status 'failed', written when "
                        f"{network.name} was only a random control; see its log), but this "
                        "run needs it as a decided group or a first-stage network, whose "
                        "training must succeed. Delete the file to train it again."
                    )
                manifest["file"].append(str(path))
                manifest["stem"].append(Path(path).name.removesuffix(".parquet"))
                for name in MANIFEST_COLUMNS:
                    manifest[name].append(first[name])
                pending.append(table)
                rows += table.num_rows
                if sum(t.num_rows for t in pending) >= ROW_GROUP_ROWS:
                    writer.write_table(pa.concat_tables(pending))
                    pending = []
            if pending:
                writer.write_table(pa.concat_tables(pending))
    networks = pa.table(manifest, schema=NETWORKS)
    if networks_out is not None:
        write_table(networks, networks_out, NETWORKS)

    with atomic_write(duckdb_out) as tmp:
        tmp.unlink()  # DuckDB creates its own file; an empty one is not a database
        try:
            with duckdb.connect(str(tmp)) as con:
                # From the file just written: DuckDB streams it instead of a copy in memory.
                con.execute(
                    "CREATE TABLE metrics AS SELECT * FROM read_parquet($path)",
                    {"path": str(parquet_out)},
                )
                con.register("manifest", networks)
                con.execute("CREATE TABLE networks AS SELECT * FROM manifest")
                con.execute("CHECKPOINT")
        finally:
            wal = f"{tmp}.wal"
            if os.path.exists(wal):
                os.unlink(wal)
    return rows


__all__ = ["collect", "SchemaMismatch"]
