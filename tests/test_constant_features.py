"""Constant feature columns of your own data (one value in every row of the file): dropped with
a warning naming them, or refused (dataset.constant_features: refuse); images keep every pixel;
the kept columns are one attribute of the dataset (what export / predict apply)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.config import resolve_config
from pipeline.datasets import DatasetError, load_dataset, network_dataset
from pipeline.datasets.arrays import load_arrays
from pipeline.datasets.table import load_table

ROWS = 120


def _table(tmp_path: Path, flat: int = 2) -> tuple[Path, list[str]]:
    """Features x0..x3 varying and `flat` constant columns interleaved, targets a and b."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame()
    names = []
    for i in range(4):
        frame[f"x{i}"] = rng.standard_normal(ROWS)
        names.append(f"x{i}")
        if i < flat:
            frame[f"xflat{i}"] = float(i)
            names.append(f"xflat{i}")
    for extra in range(4, flat):
        frame[f"xflat{extra}"] = 1.0
        names.append(f"xflat{extra}")
    frame["a"] = (frame["x0"] > 0).astype(int)
    frame["b"] = frame["x1"] + 0.1 * rng.standard_normal(ROWS)
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    return path, names


def _config(path: Path, **dataset) -> dict:
    return {"name": "table", "path": str(path), "features": {"prefix": "x"},
            "targets": {"a": "binary", "b": "regression"}, **dataset}  # fmt: skip


def test_table_constant_columns_are_dropped_and_named(tmp_path: Path) -> None:
    path, names = _table(tmp_path)
    data = load_table(_config(path))
    assert data.dropped_features == ("xflat0", "xflat1")
    assert data.feature_columns == ("x0", "x1", "x2", "x3")
    assert data.feature_indices == (0, 2, 4, 5)
    source = pd.read_csv(path)[names].to_numpy(np.float32)
    # The one place export / predict take the model's inputs from: equal to what trains.
    np.testing.assert_array_equal(data.select_features(source), data.features)
    kept = pd.read_csv(path)[list(data.feature_columns)].to_numpy(np.float32)
    np.testing.assert_array_equal(data.features, kept)


def test_table_constant_columns_refused_on_request_abbreviated(tmp_path: Path) -> None:
    path, _ = _table(tmp_path, flat=14)
    with pytest.raises(DatasetError) as err:
        load_table(_config(path, constant_features="refuse"))
    message = str(err.value)
    assert "14 constant column(s)" in message and "'xflat0'" in message
    assert "... (4 more), 'xflat13'" in message and "'xflat12'" not in message


def test_every_column_constant_is_refused_even_when_dropping(tmp_path: Path) -> None:
    path = tmp_path / "flat.csv"
    pd.DataFrame({"x0": [1.0] * 40, "a": [0, 1] * 20}).to_csv(path, index=False)
    with pytest.raises(DatasetError, match="every feature column is constant"):
        load_table({"path": str(path), "features": ["x0"], "targets": {"a": "binary"}})


def test_arrays_drop_columns_and_keep_image_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 5)).astype(np.float32)
    x[:, 1] = 3.0
    images = rng.standard_normal((50, 1, 4, 4)).astype(np.float32)
    images[:, :, 0, :] = 0.0  # a constant border row, as in digits
    y = (rng.standard_normal(50) > 0).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, images=images, y=y)
    config = {"path": str(tmp_path / "d.npz"), "targets": {"y": "binary"}}
    data = load_arrays(config)
    assert data.dropped_features == ("x[:, 1]",) and data.feature_indices == (0, 2, 3, 4)
    np.testing.assert_array_equal(data.select_features(x), data.features)
    pixels = load_arrays({**config, "inputs": "images"})
    assert pixels.features.shape == (50, 1, 4, 4) and pixels.dropped_features == ()
    with pytest.raises(DatasetError, match=r"'x\[:, 1\]'"):
        load_arrays({**config, "constant_features": "refuse"})


def test_validate_warns_naming_them_and_the_spec_is_one(tmp_path: Path) -> None:
    path, _ = _table(tmp_path)
    said: list[str] = []
    config = resolve_config({"dataset": _config(path), "sweep": {"orders": [1]}},
                            warn=said.append)  # fmt: skip
    dropped = [m for m in said if "constant" in m]
    assert dropped == [
        "config key dataset.features: 2 constant feature column(s) dropped (one value in every "
        f"row of {path}): 'xflat0', 'xflat1'; dataset.constant_features: refuse stops instead"
    ]
    explicit = {**config["dataset"], "constant_features": "drop"}
    assert network_dataset(explicit, ("a",)) == network_dataset(config["dataset"], ("a",))
    assert load_dataset(explicit).features.shape == (ROWS, 4)


@pytest.mark.slow
def test_constant_columns_train_through_the_workflow(tmp_path: Path) -> None:
    from workflow import snakemake

    path, _ = _table(tmp_path)
    config = {
        "dataset": _config(path),
        "sweep": {"orders": [1], "sizes": ["full"], "all_in_one": True},
        "model": {"hidden": [8]},
        "training": {"epochs": 1, "batch_size": 64},
        "selection": {"budgets": [1, 2]},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path)
    assert "2 constant feature column(s) dropped" in proc.stdout + proc.stderr
    metrics = pd.read_parquet(tmp_path / "results" / "metrics.parquet")
    assert set(metrics["network"]) == {"a@full", "b@full", "a+b@full"}
    assert (metrics["status"] == "ok").all()
