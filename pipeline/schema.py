"""The declared Arrow schemas of every table taskgroup writes, and the one way to write them.

Long format: one row per network x task x split x epoch x metric. Every writer goes through
:func:`write_table`, which casts to the declared schema (failing loudly on a missing or
mistyped column) and writes atomically, so a killed job never leaves a file that looks complete.
"""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq

from .io import atomic_write

SCHEMA_VERSION = "1"

METRICS = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        # "<task>+<task>@<size>" ("+", "@", "\\" in a task name escaped with "\\"; past 200
        # characters shortened with a hash of the task set: pipeline/sweep.py). A label and a
        # key: the task list is ``tasks``, never parsed out of this.
        pa.field("network", pa.string(), nullable=False),
        pa.field("tasks", pa.list_(pa.string()), nullable=False),
        pa.field("n_tasks", pa.int16(), nullable=False),
        pa.field("size", pa.string(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        # Multiply-adds relative to the full-size single-task network (= 1.0).
        pa.field("cost", pa.float64(), nullable=False),
        pa.field("macs", pa.int64(), nullable=False),
        pa.field("architecture", pa.string(), nullable=False),
        pa.field("weighting", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        pa.field("task_type", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("epoch", pa.int32(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        # NaN where undefined (one class only in a split) or after divergence.
        pa.field("value", pa.float64(), nullable=True),
        pa.field("n_labelled", pa.int64(), nullable=False),
        # Network-level outcome: "ok", "diverged" (then diverged_epoch says when) or "failed"
        # (a random control whose training raised: pipeline.jobs, training.failed_table).
        pa.field("status", pa.string(), nullable=False),
        pa.field("diverged_epoch", pa.int32(), nullable=True),
        pa.field("epochs", pa.int32(), nullable=False),
        # Cumulative in-process training + evaluation seconds at the end of this epoch.
        pa.field("wall_time_s", pa.float64(), nullable=False),
        pa.field("device", pa.string(), nullable=False),
        # sha256 of the network's full training spec: equal hash, equal training.
        pa.field("config_hash", pa.string(), nullable=False),
        # JSON object of package versions (python, torch, numpy, pyarrow, taskgroup).
        pa.field("versions", pa.string(), nullable=False),
    ],
    metadata={"taskgroup.table": "metrics", "taskgroup.schema_version": SCHEMA_VERSION},
)

# results/networks.parquet: which file holds which network, so file names can stay short
# hashes whatever the task names (one row per network file of the sweep).
NETWORKS = pa.schema(
    [
        pa.field("file", pa.string(), nullable=False),
        pa.field("stem", pa.string(), nullable=False),
        pa.field("network", pa.string(), nullable=False),
        pa.field("tasks", pa.list_(pa.string()), nullable=False),
        pa.field("n_tasks", pa.int16(), nullable=False),
        pa.field("size", pa.string(), nullable=False),
        pa.field("architecture", pa.string(), nullable=False),
        pa.field("weighting", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
    ],
    metadata={"taskgroup.table": "networks", "taskgroup.schema_version": SCHEMA_VERSION},
)

# results/samples/<same path as the network's runs/ file>: each labelled test value's loss at
# the final epoch, from the final model (pipeline/sample_losses.py), so a difference of two
# groupings' test totals gets a paired bootstrap interval over the test rows
# (pipeline/selection/gains.py).
# Long format: one row per test row x task with a label. A diverged network has no rows.
TEST_LOSSES = pa.schema(
    [
        pa.field("network", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        # sha256 of the network's training spec (the METRICS column of the same name).
        pa.field("config_hash", pa.string(), nullable=False),
        # The dataset row (split.parquet's ``row``).
        pa.field("row", pa.int32(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        # The row's loss as the recorded test loss averages it (float32: the values the
        # training computed, stored exactly). Dense tasks: the mean over the row's labelled
        # pixels.
        pa.field("loss", pa.float32(), nullable=False),
        # Labelled cells behind ``loss`` (1 for a vector task; labelled pixels for a dense one):
        # a task's test loss is sum(weight * loss) / sum(weight) over its rows.
        pa.field("weight", pa.int32(), nullable=False),
    ],
    metadata={"taskgroup.table": "test_losses", "taskgroup.schema_version": SCHEMA_VERSION},
)

SPLITS = ("train", "val", "test")

# One row per dataset row: which split it belongs to (the workflow's split.parquet).
SPLIT = pa.schema(
    [pa.field("row", pa.int64(), nullable=False), pa.field("split", pa.string(), nullable=False)],
    metadata={"taskgroup.table": "split"},
)

# The budgeted grouping solve's answer (pipeline/selection): one row per method x budget x task.
GROUPINGS = pa.schema(
    [
        pa.field("architecture", pa.string(), nullable=False),
        pa.field("weighting", pa.string(), nullable=False),
        # sum (Standley) or normalised (each task / its full-size single-task loss).
        pa.field("objective", pa.string(), nullable=False),
        # Which epoch's losses judged a network: final or best_val.
        pa.field("epoch", pa.string(), nullable=False),
        pa.field("budget", pa.float64(), nullable=False),
        # The selection method (how the solve picked networks; not the training method, which is
        # architecture x weighting): optimal | esa | hoa | all_in_one | independent |
        # independent_mix | random | worst. Called "method" before this release.
        pa.field("selection_method", pa.string(), nullable=False),
        # ok | infeasible (nothing fits the budget) | unavailable (e.g. no early losses)
        pa.field("status", pa.string(), nullable=False),
        pa.field("note", pa.string(), nullable=True),
        # The chosen networks (null for random, which is a mean over many choices).
        pa.field("networks", pa.list_(pa.string()), nullable=True),
        pa.field("cost", pa.float64(), nullable=True),
        # One row per task; null on infeasible/unavailable rows.
        pa.field("task", pa.string(), nullable=True),
        # The chosen network serving the task on the selection table, and that loss.
        pa.field("network", pa.string(), nullable=True),
        pa.field("val_loss", pa.float64(), nullable=True),
        # The task's best chosen network re-evaluated on test (Standley's scoring), its loss,
        # and whether that loss is a HOA estimate (a task set that was never trained).
        pa.field("test_network", pa.string(), nullable=True),
        pa.field("test_loss", pa.float64(), nullable=True),
        pa.field("test_estimated", pa.bool_(), nullable=True),
        pa.field("val_total", pa.float64(), nullable=True),
        pa.field("test_total", pa.float64(), nullable=True),
        # Standard deviation over seeds of the chosen set's test total (null: one seed).
        pa.field("test_total_std", pa.float64(), nullable=True),
        pa.field("n_seeds", pa.int32(), nullable=False),
        # Random only: accepted random draws averaged.
        pa.field("samples", pa.int64(), nullable=True),
        # Proven relative optimality gap of the answer (0: proven optimal; > 0: a time limit
        # stopped the MIP first; for worst: how far the worst found may be from the true worst).
        # Null where no MIP decided (all-in-one, independent, random).
        pa.field("gap", pa.float64(), nullable=True),
    ],
    metadata={"taskgroup.table": "groupings", "taskgroup.schema_version": SCHEMA_VERSION},
)


# results/gains.parquet: each answer's test-total difference against a reference grouping at
# one budget, with a 95 % interval (pipeline/selection/gains.py; docs/intervals.md).
GAINS = pa.schema(
    [
        pa.field("architecture", pa.string(), nullable=False),
        pa.field("weighting", pa.string(), nullable=False),
        pa.field("objective", pa.string(), nullable=False),
        pa.field("epoch", pa.string(), nullable=False),
        pa.field("budget", pa.float64(), nullable=False),
        # The answer (a groupings selection_method) and what it is compared against.
        pa.field("method", pa.string(), nullable=False),
        pa.field("against", pa.string(), nullable=False),
        # Total test loss of against minus that of method: positive = method's loss is lower (a
        # gain), as the summary's advantage.
        pa.field("difference", pa.float64(), nullable=True),
        # The 95 % interval of the difference; null where none could be computed (see how).
        pa.field("low", pa.float64(), nullable=True),
        pa.field("high", pa.float64(), nullable=True),
        # Seeds paired (seeds_t) or the one seed bootstrapped.
        pa.field("n_seeds", pa.int32(), nullable=False),
        # seeds_t (per-seed differences, Student t) | bootstrap (paired over test rows) |
        # none: <why>
        pa.field("how", pa.string(), nullable=False),
        # Bootstrap resamples (null for seeds_t and none).
        pa.field("resamples", pa.int32(), nullable=True),
    ],
    metadata={"taskgroup.table": "gains", "taskgroup.schema_version": SCHEMA_VERSION},
)


class SchemaMismatch(ValueError):
    """A file or table does not have the declared columns and types."""


def conform(table: pa.Table, schema: pa.Schema, what: str = "table") -> pa.Table:
    """Return ``table`` cast to ``schema`` (column order included) or raise SchemaMismatch."""
    missing = [name for name in schema.names if name not in table.column_names]
    extra = [name for name in table.column_names if name not in schema.names]
    if missing or extra:
        raise SchemaMismatch(f"{what}: missing columns {missing}, unexpected columns {extra}")
    table = table.select(schema.names)
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as err:
        raise SchemaMismatch(f"{what}: cannot cast to the declared schema: {err}") from err


def check_file(path: str | os.PathLike, schema: pa.Schema) -> None:
    """Raise SchemaMismatch naming ``path`` if it is unreadable or not of ``schema``."""
    try:
        found = pq.read_schema(path)
    except Exception as err:  # pyarrow raises several types for a truncated/corrupt file
        raise SchemaMismatch(f"{path}: not a readable Parquet file ({err})") from err
    if not found.remove_metadata().equals(schema.remove_metadata(), check_metadata=False):
        raise SchemaMismatch(
            f"{path}: schema differs from the declared one.\n found: {found}\n wanted: {schema}"
        )


# A network run file's key-value metadata: the JSON training spec it was trained with
# (config_hash is its hash), so a changed spec can be named key by key.
SPEC_METADATA = b"taskgroup.spec"


def with_spec(table: pa.Table, spec: dict) -> pa.Table:
    """``table`` carrying ``spec`` in its metadata (kept by :func:`write_table`)."""
    import json

    metadata = {**(table.schema.metadata or {}), SPEC_METADATA: json.dumps(spec, sort_keys=True)}
    return table.replace_schema_metadata(metadata)


def recorded_spec(path: str | os.PathLike) -> dict | None:
    """The training spec a run file records (None: written before specs were recorded)."""
    import json

    raw = (pq.read_schema(path).metadata or {}).get(SPEC_METADATA)
    return json.loads(raw) if raw else None


def write_table(table: pa.Table, path: str | os.PathLike, schema: pa.Schema) -> None:
    """Cast ``table`` to ``schema`` and write it to ``path`` atomically (temp file + rename)."""
    spec = (table.schema.metadata or {}).get(SPEC_METADATA)
    table = conform(table, schema, what=str(path))
    if spec is not None:
        metadata = {**(table.schema.metadata or {}), SPEC_METADATA: spec}
        table = table.replace_schema_metadata(metadata)
    with atomic_write(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


# Inter-task affinity recorded during one training (TAG, Fifty et al. 2021): long format, one
# row per source task x target task x epoch. value = mean over the epoch's lookahead steps of
# 1 - L_target(after a step on the source's loss alone) / L_target(before).
AFFINITY = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("network", pa.string(), nullable=False),
        pa.field("architecture", pa.string(), nullable=False),
        pa.field("weighting", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("target", pa.string(), nullable=False),
        pa.field("epoch", pa.int32(), nullable=False),
        # NaN when no step of the epoch had labels for both tasks in its batch.
        pa.field("value", pa.float64(), nullable=True),
        # Lookahead steps averaged (those with labels for both tasks in the batch).
        pa.field("steps", pa.int32(), nullable=False),
        # How the lookahead was taken: every k-th step, its learning rate.
        pa.field("every", pa.int32(), nullable=False),
        pa.field("lookahead_lr", pa.float64(), nullable=False),
        # sha256 of the estimation's spec (the network's training spec + these settings).
        pa.field("config_hash", pa.string(), nullable=False),
    ],
    metadata={"taskgroup.table": "affinity", "taskgroup.schema_version": SCHEMA_VERSION},
)

# Each decided group of an estimating strategy: its estimated benefit next to its measured one.
ESTIMATES = pa.schema(
    [
        pa.field("architecture", pa.string(), nullable=False),
        pa.field("weighting", pa.string(), nullable=False),
        # The strategy (sweep.strategy) whose estimate decided the group.
        pa.field("strategy", pa.string(), nullable=False),
        pa.field("tasks", pa.list_(pa.string()), nullable=False),
        pa.field("n_tasks", pa.int32(), nullable=False),
        # The strategy's own estimate of the group, in ``estimate_unit`` (readable: tag's
        # affinities are ~1e-6 of the loss, so parts per million; pairs and sampled: %).
        pa.field("estimated_benefit", pa.float64(), nullable=True),
        pa.field("estimate_unit", pa.string(), nullable=False),
        # Measured mean relative loss gain of the members over their full single-task
        # networks, in % (positive: the group is better).
        pa.field("measured_val_gain", pa.float64(), nullable=True),
        pa.field("measured_test_gain", pa.float64(), nullable=True),
        pa.field("seeds", pa.int32(), nullable=True),
    ],
    metadata={"taskgroup.table": "estimates", "taskgroup.schema_version": SCHEMA_VERSION},
)

# ``taskgroup predict``: one row per input row x task, each task predicted by the network the
# exported answer assigns it (pipeline/predict.py).
PREDICTIONS = pa.schema(
    [
        # 0-based row of the input file.
        pa.field("row", pa.int64(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        # binary: probability of 1; regression: value in the target's units; multiclass: class id.
        pa.field("prediction", pa.float64(), nullable=False),
        # multiclass: the class's label (the table's own, where labels were mapped to ids).
        pa.field("label", pa.string(), nullable=True),
        # multiclass: probability of each class id.
        pa.field("probabilities", pa.list_(pa.float64()), nullable=True),
        pa.field("network", pa.string(), nullable=False),
    ],
    metadata={"taskgroup.table": "predictions", "taskgroup.schema_version": SCHEMA_VERSION},
)

# Grad-TAG's estimates (pipeline/affinity/gradtag.py): one row per estimated subset x member,
# each member's estimated validation loss after a linearised fine-tune on the subset from the
# all-in-one network's parameters at epoch meta_epoch, and that loss relative to the member's
# own estimate alone (below 1: its partners help).
GRADTAG = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("network", pa.string(), nullable=False),
        pa.field("architecture", pa.string(), nullable=False),
        pa.field("weighting", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("subset", pa.int64(), nullable=False),
        pa.field("members", pa.list_(pa.string()), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        # Mean validation loss (the training loss: cross-entropy, squared standardised error).
        pa.field("loss", pa.float64(), nullable=False),
        pa.field("relative_loss", pa.float64(), nullable=False),
        pa.field("meta_epoch", pa.int32(), nullable=False),
        pa.field("dim", pa.int32(), nullable=False),
        pa.field("ridge", pa.float64(), nullable=False),
        # Seconds: the gradient statistics, then all subsets' estimates.
        pa.field("statistics_s", pa.float64(), nullable=False),
        pa.field("estimate_s", pa.float64(), nullable=False),
        pa.field("config_hash", pa.string(), nullable=False),
    ],
    metadata={"taskgroup.table": "gradtag", "taskgroup.schema_version": SCHEMA_VERSION},
)
