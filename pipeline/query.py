"""Read-only queries over a collected sweep: named SQL files and arbitrary SQL."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.dataset

SQL_PACKAGE = "pipeline.sql"


def named_queries() -> dict[str, str]:
    """Query name -> its first comment line (the description)."""
    out = {}
    for entry in sorted(resources.files(SQL_PACKAGE).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            first = entry.read_text().splitlines()[0]
            out[entry.name[:-4]] = first.lstrip("- ").strip()
    return out


def query_text(name: str) -> str:
    queries = named_queries()
    if name not in queries:
        raise KeyError(f"unknown query {name!r}; known: {', '.join(queries)}")
    return resources.files(SQL_PACKAGE).joinpath(f"{name}.sql").read_text()


# The result tables written next to sweep.duckdb (results_dir), each its own Parquet file:
# visible to SQL under these names wherever they exist. metrics and networks are in the
# database itself.
RESULT_TABLES = ("groupings", "estimates", "affinity", "split")


def result_tables(database: str | Path) -> dict[str, Path]:
    """Table name -> Parquet file, for the result files that exist beside ``database``."""
    folder = Path(database).parent
    return {name: folder / f"{name}.parquet" for name in RESULT_TABLES}


def connect(database: str | Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection that also cannot read or write other files: a query cannot
    modify the results it reports on. The result tables beside the database (RESULT_TABLES,
    whichever exist) are readable by name: registered as Arrow datasets, scanned lazily,
    before file access is switched off."""
    if not Path(database).exists():
        raise FileNotFoundError(f"{database}: no collected sweep here (run the collect rule first)")
    con = duckdb.connect(str(database), read_only=True)
    for name, path in result_tables(database).items():
        if path.exists():
            con.register(name, pyarrow.dataset.dataset(str(path), format="parquet"))
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def tables(database: str | Path) -> list[str]:
    """The tables a query over ``database`` can read, in the database and beside it."""
    with connect(database) as con:
        rows = con.execute("SELECT name FROM (SHOW ALL TABLES) ORDER BY name").fetchall()
    return [name for (name,) in rows]


def run_query(database: str | Path, sql: str, params: dict | None = None) -> pd.DataFrame:
    with connect(database) as con:
        return con.execute(sql, params or {}).df()


def run_named(database: str | Path, name: str, params: dict | None = None) -> pd.DataFrame:
    text = query_text(name)
    # Bind only the parameters the query declares, so one CLI flag set serves all queries.
    wanted = {k: v for k, v in (params or {}).items() if f"${k}" in text}
    return run_query(database, text, wanted)
