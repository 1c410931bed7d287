"""Candidate networks for the solve: built by the DuckDB queries in pipeline/sql/selection/ over
the collected metrics (or an external results file), then held as dense arrays per method.

Dense arrays because the solver, HOA and baselines all index "network n, task t": a loss table
is networks x tasks with NaN where a network has no output for a task.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from importlib import resources

import duckdb
import numpy as np
import pandas as pd

SQL_PACKAGE = "pipeline.sql"


def sql(name: str) -> str:
    """The text of pipeline/sql/selection/<name>.sql."""
    return resources.files(SQL_PACKAGE).joinpath(f"selection/{name}.sql").read_text()


@dataclass(frozen=True)
class CandidateFrames:
    """What the queries return: candidates (mean/std over seeds), per-seed test losses, and the
    networks excluded for diverging."""

    candidates: pd.DataFrame
    seeds: pd.DataFrame
    excluded: pd.DataFrame


class MissingTasks(ValueError):
    """Tasks the solve was asked to cover have no loss in the results."""


def _frames(con: duckdb.DuckDBPyConnection, tasks: list[str] | None = None) -> CandidateFrames:
    frames = CandidateFrames(
        candidates=con.execute(sql("candidates")).df(),
        seeds=con.execute(sql("candidate_seeds")).df(),
        excluded=con.execute(sql("excluded")).df(),
    )
    # A requested task nobody reports a loss for would silently drop out of every total.
    present = set(frames.candidates["task"]) if "task" in frames.candidates else set()
    missing = [t for t in tasks or [] if t not in present]
    if missing and not frames.candidates.empty:
        raise MissingTasks(f"task(s) {missing} have no (non-diverged) network in the results")
    return frames


def query_metrics(
    metrics_path: str | os.PathLike, esa_fraction: float, tasks: list[str] | None = None
) -> CandidateFrames:
    """Run the candidate queries over a collected metrics Parquet file (METRICS schema)."""
    if not os.path.exists(metrics_path):
        raise FileNotFoundError(f"{metrics_path}: no collected metrics here")
    with duckdb.connect() as con:
        # A view, not a copy: DuckDB scans only the columns and row groups the queries need.
        con.read_parquet(str(metrics_path)).create_view("metrics")
        con.execute(
            "CREATE TEMP TABLE seed_losses AS " + _strip(sql("seed_losses")),
            {"esa_fraction": float(esa_fraction), "tasks": tasks},
        )
        return _frames(con, tasks)


def query_external(frame: pd.DataFrame, tasks: list[str] | None = None) -> CandidateFrames:
    """Run the candidate queries over an external long-format table (see external.py)."""
    with duckdb.connect() as con:
        # The task-set column is for people and checks only; the queries read rows.
        con.register("external", frame.drop(columns=["tasks"], errors="ignore"))
        con.execute(
            "CREATE TEMP TABLE seed_losses AS " + _strip(sql("external_seed_losses")),
            {"tasks": tasks},
        )
        return _frames(con, tasks)


def _strip(text: str) -> str:
    # CREATE TABLE AS takes one statement: drop the file's closing semicolon.
    return text.strip().rstrip(";")


@dataclass(frozen=True)
class Candidates:
    """One method's (architecture x weighting) candidates as arrays over networks x tasks."""

    architecture: str
    weighting: str
    tasks: list[str]
    networks: list[str]
    size: list[str | None]
    cost: np.ndarray  # (N,)
    members: np.ndarray  # (N, T) bool: the network has an output for the task
    val: np.ndarray  # (N, T) selection losses (final or best-val epoch), NaN off members
    test: np.ndarray  # (N, T) test losses at the same epoch
    early: np.ndarray  # (N, T) validation losses at the ESA epoch
    test_seeds: np.ndarray  # (N, T, S) per-seed test losses, NaN where a seed is missing
    seeds: list[int]
    # False for HOA's estimated networks that were never trained (hoa.py).
    trained: np.ndarray  # (N,) bool
    # What one unit of ``cost`` is, for people (cost_model()).
    cost_unit: str = "given"

    @property
    def label(self) -> str:
        return f"{self.architecture}/{self.weighting}"

    def usable(self, table: np.ndarray) -> np.ndarray:
        """Networks whose every output has a finite loss in ``table`` (deployable on it)."""
        return ~np.any(self.members & ~np.isfinite(table), axis=1)

    def singles(self) -> np.ndarray:
        return self.members.sum(axis=1) == 1

    def all_in_one(self) -> np.ndarray:
        return self.members.all(axis=1)

    def normalised(self) -> Candidates:
        """Every loss divided by the task's full-size single-task loss on the same table.

        The full-size single-task network of a task is its most expensive single-task network
        (full = cost 1 vs half ~0.5), which needs no size column, so external results work too.
        """
        scale = {}
        for name, table in (("val", self.val), ("test", self.test), ("early", self.early)):
            scale[name] = np.full(len(self.tasks), np.nan)
            for t, task in enumerate(self.tasks):
                singles = np.flatnonzero(self.singles() & self.members[:, t])
                if singles.size == 0:
                    raise ValueError(
                        f"{self.label}: objective 'normalised' needs a single-task "
                        f"network for {task!r}; none was trained"
                    )
                scale[name][t] = table[singles[np.argmax(self.cost[singles])], t]
        return replace(
            self,
            val=self.val / scale["val"],
            test=self.test / scale["test"],
            early=self.early / scale["early"],
            test_seeds=self.test_seeds / scale["test"][None, :, None],
        )


# Standley counts every full-width network as one unit and every half-width one as half,
# whatever its heads cost.
SIZE_UNITS = {"full": 1.0, "half": 0.5}


def cost_model(candidates: pd.DataFrame, model: str = "units") -> tuple[pd.Series, str]:
    """Each row's budget cost under ``model``, and what a unit is (for the summary).

    units: full-width networks 1, half-width 0.5 (Standley); rows without a known size keep
    their given cost. macs: multiply-adds over those of the full-width hard-sharing single-task
    network, one unit across architectures (an MTAN single costs its 3x); rows without macs
    (external results) keep their given cost.
    """
    if model == "units":
        units = candidates["size"].map(SIZE_UNITS)
        return units.fillna(candidates["cost"]).astype(float), (
            "Standley's units: a full-width network costs 1, a half-width one 0.5"
        )
    if model != "macs":
        raise ValueError(f"selection.cost: 'units' or 'macs', not {model!r}")
    macs = candidates.get("macs")
    if macs is None or macs.isna().all():
        return candidates["cost"].astype(float), "the costs given with the results"
    n_tasks = candidates.groupby(["architecture", "weighting", "network"])["task"].transform(
        "nunique"
    )
    ref_rows = candidates[
        (candidates["architecture"] == "hard_sharing")
        & (candidates["size"] == "full")
        & (n_tasks == 1)
        & candidates["macs"].notna()
    ]
    if ref_rows.empty:
        # No hard-sharing single-task network trained: each architecture's own reference.
        return candidates["cost"].astype(float), (
            "multiply-adds over each architecture's own full-width single-task network "
            "(no hard-sharing single-task network in the results)"
        )
    reference = float(ref_rows["macs"].median())
    cost = (candidates["macs"] / reference).where(candidates["macs"].notna(), candidates["cost"])
    return cost.astype(float), (
        f"multiply-adds over the full-width hard-sharing single-task network's "
        f"({reference:,.0f} MACs)"
    )


def build(frames: CandidateFrames, epoch: str = "final", cost: str = "units") -> list[Candidates]:
    """One Candidates per method. ``epoch``: 'final' or 'best_val', which losses judge a network;
    ``cost``: the budget cost model (cost_model())."""
    if epoch not in ("final", "best_val"):
        raise ValueError(f"selection.epoch must be 'final' or 'best_val', not {epoch!r}")
    suffix = "final" if epoch == "final" else "best"
    out = []
    cands = frames.candidates.copy()
    if not cands.empty:
        cands["cost"], unit = cost_model(cands, cost)
    else:
        unit = "given"

    def table(
        df: pd.DataFrame, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int], column: str
    ) -> np.ndarray:
        out_table = np.full(shape, np.nan)
        out_table[rows, cols] = df[column].to_numpy(dtype=float, na_value=np.nan)
        return out_table

    for (arch, weighting), df in cands.groupby(["architecture", "weighting"], sort=True):
        tasks = sorted(df["task"].unique())
        networks = sorted(df["network"].unique())
        net_index = {n: i for i, n in enumerate(networks)}
        task_index = {t: i for i, t in enumerate(tasks)}
        rows = df["network"].map(net_index).to_numpy()
        cols = df["task"].map(task_index).to_numpy()
        shape = (len(networks), len(tasks))

        members = np.zeros(shape, dtype=bool)
        members[rows, cols] = True
        per_net = df.groupby("network", sort=True).agg(
            cost=("cost", "first"), size=("size", "first")
        )
        seeds_df = frames.seeds[
            (frames.seeds["architecture"] == arch) & (frames.seeds["weighting"] == weighting)
        ]
        seeds = sorted(int(s) for s in seeds_df["seed"].unique())
        seed_index = {s: i for i, s in enumerate(seeds)}
        test_seeds = np.full((*shape, len(seeds)), np.nan)
        test_seeds[
            seeds_df["network"].map(net_index).to_numpy(),
            seeds_df["task"].map(task_index).to_numpy(),
            seeds_df["seed"].map(seed_index).to_numpy(),
        ] = seeds_df[f"test_{suffix}"].to_numpy(dtype=float, na_value=np.nan)
        out.append(
            Candidates(
                architecture=str(arch),
                weighting=str(weighting),
                tasks=tasks,
                networks=networks,
                size=[None if pd.isna(s) else str(s) for s in per_net["size"]],
                cost=per_net["cost"].to_numpy(dtype=float),
                members=members,
                val=table(df, rows, cols, shape, f"val_{suffix}"),
                test=table(df, rows, cols, shape, f"test_{suffix}"),
                early=table(df, rows, cols, shape, "val_early"),
                test_seeds=test_seeds,
                seeds=seeds,
                trained=np.ones(len(networks), dtype=bool),
                cost_unit=unit,
            )
        )
    return out
