"""Dataset loaders: the built-in Tox21 and yeast data, the synthetic data with planted clusters,
and a user's own Parquet/CSV table (missing labels, task types, and errors naming the culprit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.datasets import Dataset, DatasetError, load_dataset
from pipeline.datasets.builtin import TOX21_TASKS, _data_file
from pipeline.datasets.synthetic import load_synthetic
from pipeline.datasets.table import load_table

# ---------------------------------------------------------------------------------- Tox21


@pytest.fixture(scope="module")
def tox21() -> Dataset:
    return load_dataset({"name": "tox21"})


def test_tox21_shape_and_types(tox21: Dataset) -> None:
    assert tox21.features.shape == (7823, 1024)
    assert tox21.targets.shape == (7823, 12)
    assert tox21.task_names == TOX21_TASKS
    assert set(tox21.task_types) == {"binary"} and set(tox21.n_classes) == {2}
    assert tox21.features.dtype == np.float32 and tox21.targets.dtype == np.float32
    assert set(np.unique(tox21.features)) == {0.0, 1.0}
    assert tox21.binary_features
    # ECFP4 rows are sparse but never empty-ish in bulk: a bit order / packing slip shows here.
    bits = tox21.features.sum(axis=1)
    assert 10 < bits.mean() < 100


def test_tox21_missing_labels_are_nan_and_masked(tox21: Dataset) -> None:
    labelled = tox21.targets[~np.isnan(tox21.targets)]
    assert set(np.unique(labelled)) == {0.0, 1.0}
    assert np.array_equal(tox21.mask, ~np.isnan(tox21.targets))
    assert tox21.mask.dtype == bool
    assert 0.80 < tox21.mask.mean() < 0.86  # ~17% of labels missing
    # Every task has both labelled and missing cells.
    assert (tox21.mask.sum(axis=0) > 0).all() and (~tox21.mask).sum(axis=0).min() > 0


def test_tox21_drops_unfingerprinted_rows_keeping_alignment(tox21: Dataset) -> None:
    """Read the shipped file independently with pandas: the 8 rows without a fingerprint go,
    and every remaining label stays on its molecule's row."""
    with _data_file("tox21.parquet").open("rb") as fh:
        raw = pd.read_parquet(fh)
    assert len(raw) == 7831
    kept = raw[raw["ecfp4"].notna()].reset_index(drop=True)
    assert len(kept) == 7823
    for j, task in enumerate(TOX21_TASKS):
        expected = kept[task].astype("float64").to_numpy()
        got = tox21.targets[:, j].astype(np.float64)
        assert np.array_equal(np.isnan(expected), np.isnan(got)), task
        assert np.array_equal(expected[~np.isnan(expected)], got[~np.isnan(got)]), task
    # Features of the first kept molecule: bit i is set iff bit i%8 of byte i//8 is set.
    first = np.frombuffer(kept["ecfp4"][0], np.uint8)
    expected_bits = [(first[i // 8] >> (i % 8)) & 1 for i in range(1024)]
    assert np.array_equal(tox21.features[0], np.asarray(expected_bits, np.float32))


# ---------------------------------------------------------------------------------- yeast


def test_yeast_shape_no_missing_labels() -> None:
    data = load_dataset({"name": "yeast"})
    assert data.features.shape == (2417, 103)
    assert data.targets.shape == (2417, 14)
    assert len(data.task_names) == 14 and set(data.task_types) == {"binary"}
    assert data.mask.all()
    assert set(np.unique(data.targets)) == {0.0, 1.0}
    assert not data.binary_features
    assert np.isfinite(data.features).all()


# ------------------------------------------------------------------------------ synthetic

SYNTH = {"name": "synthetic", "rows": 400, "features": 64, "clusters": 2, "tasks_per_cluster": 3}


def test_synthetic_planted_groups_show_in_the_targets() -> None:
    data = load_synthetic({**SYNTH, "similarity": 0.95, "noise": 0.05})
    assert data.task_names == ("c0t0", "c0t1", "c0t2", "c1t0", "c1t1", "c1t2")
    assert data.true_groups == {
        "c0t0": 0, "c0t1": 0, "c0t2": 0, "c1t0": 1, "c1t1": 1, "c1t2": 1,
    }  # fmt: skip
    corr = np.corrcoef(data.targets.T)
    same = [corr[i, j] for i in range(6) for j in range(i + 1, 6) if i // 3 == j // 3]
    other = [corr[i, j] for i in range(6) for j in range(i + 1, 6) if i // 3 != j // 3]
    assert min(same) > 0.6
    assert min(same) > max(np.abs(other))


def test_synthetic_is_deterministic_by_seed() -> None:
    a = load_synthetic({**SYNTH, "seed": 3})
    b = load_synthetic({**SYNTH, "seed": 3})
    c = load_synthetic({**SYNTH, "seed": 4})
    assert np.array_equal(a.features, b.features) and np.array_equal(a.targets, b.targets)
    assert not np.array_equal(a.features, c.features)
    assert not np.array_equal(a.targets, c.targets)


def test_synthetic_missing_fraction_gives_nan_labels() -> None:
    full = load_synthetic({**SYNTH, "rows": 2000})
    data = load_synthetic({**SYNTH, "rows": 2000, "missing_fraction": 0.3})
    assert not np.isnan(full.targets).any()
    missing = np.isnan(data.targets)
    assert abs(missing.mean() - 0.3) < 0.02
    assert np.array_equal(data.mask, ~missing)
    assert not np.isnan(data.features).any()


def test_synthetic_binary_option() -> None:
    data = load_synthetic({**SYNTH, "task_type": "binary"})
    assert set(data.task_types) == {"binary"} and set(data.n_classes) == {2}
    assert set(np.unique(data.targets)) == {0.0, 1.0}
    # Thresholded at the median: each task is balanced.
    assert np.allclose(data.targets.mean(axis=0), 0.5, atol=0.01)
    regression = load_synthetic(SYNTH)
    assert set(regression.task_types) == {"regression"} and set(regression.n_classes) == {0}
    assert np.unique(regression.targets).size > 100


# ---------------------------------------------------------------------------- user tables


def _user_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 60
    frame = pd.DataFrame({f"fp_{i}": rng.integers(0, 2, n).astype(np.int64) for i in range(5)})
    frame["id"] = np.arange(n, dtype=np.int64)  # numeric but not a feature (prefix selection)
    frame["active"] = pd.array(rng.integers(0, 2, n), dtype="Int64")
    frame["kind"] = pd.array(rng.integers(0, 3, n), dtype="Int64")
    frame["logp"] = rng.standard_normal(n)
    frame.loc[[1, 5, 7], "active"] = pd.NA
    frame.loc[[2, 5], "kind"] = pd.NA
    frame.loc[[0, 9], "logp"] = np.nan
    return frame


TARGETS = {"active": "binary", "kind": "multiclass", "logp": "regression"}


def _check_user_dataset(data: Dataset, frame: pd.DataFrame) -> None:
    assert data.task_names == ("active", "kind", "logp")
    assert data.task_types == ("binary", "multiclass", "regression")
    assert data.n_classes == (2, 3, 0)
    assert [data.output_dim(t) for t in data.task_names] == [1, 3, 1]
    assert data.features.shape == (60, 5)
    assert np.array_equal(data.features, frame[[f"fp_{i}" for i in range(5)]].to_numpy())
    assert data.binary_features
    # Empty cells are missing labels: NaN in targets, False in the mask; the rest kept exactly.
    for j, column in enumerate(TARGETS):
        expected = frame[column].astype("float64").to_numpy()
        missing = np.isnan(expected)
        assert np.array_equal(np.isnan(data.targets[:, j]), missing), column
        assert np.array_equal(data.mask[:, j], ~missing), column
        assert np.allclose(data.targets[~missing, j], expected[~missing]), column
    assert int((~data.mask).sum()) == 3 + 2 + 2


def test_user_table_parquet(tmp_path: Path) -> None:
    frame = _user_frame()
    path = tmp_path / "mine.parquet"
    frame.to_parquet(path)
    data = load_table({"path": str(path), "features": {"prefix": "fp_"}, "targets": TARGETS})
    assert data.name == "mine"
    _check_user_dataset(data, frame)


def test_user_table_csv_with_empty_cells(tmp_path: Path) -> None:
    frame = _user_frame()
    path = tmp_path / "mine.csv"
    frame.to_csv(path, index=False)  # pandas writes missing values as empty cells
    assert ",," in path.read_text()
    config = {"name": "table", "path": str(path), "features": {"prefix": "fp_"},
              "targets": TARGETS, "label": "my_data"}  # fmt: skip
    data = load_dataset(config)  # through the registry
    assert data.name == "my_data"
    _check_user_dataset(data, frame)


def test_user_table_feature_list_and_non_binary_features(tmp_path: Path) -> None:
    frame = _user_frame()
    frame["x_real"] = np.linspace(-1.0, 1.0, len(frame))
    path = tmp_path / "mine.parquet"
    frame.to_parquet(path)
    data = load_table({"path": str(path), "features": ["fp_0", "x_real"], "targets": TARGETS})
    assert data.features.shape == (60, 2)
    assert np.allclose(data.features[:, 1], frame["x_real"].to_numpy())
    assert not data.binary_features
    # The prefix picks exactly the columns that start with it.
    data = load_table({"path": str(path), "features": {"prefix": "x_"}, "targets": TARGETS})
    assert data.features.shape == (60, 1)


def _write(tmp_path: Path, frame: pd.DataFrame, name: str = "t.parquet") -> Path:
    path = tmp_path / name
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    return path


def _base_frame() -> pd.DataFrame:
    return pd.DataFrame({"f0": [0.0, 1.0, 2.0, 3.0], "f1": [1.0, 0.0, 1.0, 0.0],
                         "y": [0, 1, 0, 1]})  # fmt: skip


def test_user_table_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.parquet"
    with pytest.raises(DatasetError, match="nope.parquet"):
        load_table({"path": str(path), "features": ["f0"], "targets": {"y": "binary"}})


def test_user_table_non_numeric_feature_names_column(tmp_path: Path) -> None:
    frame = _base_frame()
    frame["smiles"] = ["C", "CC", "CCC", "CCCC"]
    path = _write(tmp_path, frame, "t.csv")
    with pytest.raises(DatasetError, match=r"'smiles'.*t\.csv.*not numeric"):
        load_table({"path": str(path), "features": ["f0", "smiles"], "targets": {"y": "binary"}})


def test_user_table_constant_feature_names_column(tmp_path: Path) -> None:
    frame = _base_frame()
    frame["flat"] = 7.0
    path = _write(tmp_path, frame)
    with pytest.raises(DatasetError, match=r"constant column.*'flat'.*refuse"):
        load_table({"path": str(path), "features": ["f0", "flat"], "targets": {"y": "binary"},
                    "constant_features": "refuse"})  # fmt: skip


def test_user_table_missing_feature_column_names_it(tmp_path: Path) -> None:
    path = _write(tmp_path, _base_frame())
    with pytest.raises(DatasetError, match="'f9'"):
        load_table({"path": str(path), "features": ["f0", "f9"], "targets": {"y": "binary"}})


@pytest.mark.parametrize("name", ["t.parquet", "t.csv"])
def test_user_table_task_without_labels_names_column(tmp_path: Path, name: str) -> None:
    frame = _base_frame()
    frame["empty"] = np.nan
    path = _write(tmp_path, frame, name)
    with pytest.raises(DatasetError, match=r"'empty'.*no labels"):
        load_table({"path": str(path), "features": ["f0", "f1"],
                    "targets": {"y": "binary", "empty": "regression"}})  # fmt: skip


def test_user_table_binary_column_with_a_two_names_column(tmp_path: Path) -> None:
    frame = _base_frame()
    frame["y"] = [0, 1, 2, 1]
    path = _write(tmp_path, frame)
    with pytest.raises(DatasetError, match=r"'y'.*not 0/1"):
        load_table({"path": str(path), "features": ["f0", "f1"], "targets": {"y": "binary"}})
    # The same column is a fine multiclass task.
    data = load_table({"path": str(path), "features": ["f0", "f1"], "targets": {"y": "multiclass"}})
    assert data.n_classes == (3,)


@pytest.mark.parametrize("name", ["t.parquet", "t.csv"])
def test_user_table_any_column_name_is_a_task_name(tmp_path: Path, name: str) -> None:
    task = "Neoplasms benign, malignant (incl cysts) + a/b µ"
    frame = _base_frame().rename(columns={"y": task})
    path = _write(tmp_path, frame, name)
    data = load_table({"path": str(path), "features": ["f0"], "targets": {task: "binary"}})
    assert data.task_names == (task,)


def test_unknown_dataset_name() -> None:
    with pytest.raises(DatasetError, match="tox22"):
        load_dataset({"name": "tox22"})


def test_parquet_table_written_by_pyarrow_with_nulls(tmp_path: Path) -> None:
    """Arrow nulls (not only NaN) are missing labels too."""
    table = pa.table({"a": [0.0, 1.0, 0.5, 0.25], "y": pa.array([1, None, 0, 1], pa.int8())})
    path = tmp_path / "nulls.parquet"
    pq.write_table(table, path)
    data = load_table({"path": str(path), "features": ["a"], "targets": {"y": "binary"}})
    assert np.array_equal(data.mask[:, 0], [True, False, True, True])
    assert data.targets[0, 0] == 1.0 and data.targets[2, 0] == 0.0
