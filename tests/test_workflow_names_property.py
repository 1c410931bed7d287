"""Whatever task name ``validate`` accepts, the real workflow runs (issue 20 item 1): generated
names (braces, quotes, ``*``, ``/``, ``+``, ``@``, backslashes, any Unicode) through a tiny
Snakemake run each, and the names that can never work refused by validation, named."""

from __future__ import annotations

import shutil
import tempfile
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline.config import ConfigError, resolve_config
from pipeline.datasets.base import NEVER_IN_A_TASK_NAME
from workflow import snakemake, write_config

FEATURES = [f"f{i}" for i in range(4)]
AWKWARD = "{}[]()'\"*/\\+@%$#:,;=!?|<>&~`^ digit in {1,7} é Ω 漢 🧪 \u00a0\u200b"
allowed_char = st.one_of(
    st.sampled_from(AWKWARD),
    st.characters(exclude_categories=NEVER_IN_A_TASK_NAME),
)
task_name = st.text(allowed_char, min_size=1, max_size=12).filter(
    lambda name: bool(name.strip()) and name not in FEATURES
)


def _distinct(names: list[str]) -> bool:
    keys = {unicodedata.normalize("NFC", n).strip() for n in names}
    return len(keys) == len(names)


def _table(path: Path, tasks: list[str], rows: int = 120) -> None:
    """A CSV (or Parquet, by suffix) of FEATURES and one regression target per task."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, len(FEATURES)))
    frame = pd.DataFrame(dict(zip(FEATURES, x.T)))
    for j, task in enumerate(tasks):
        frame[task] = x[:, j % len(FEATURES)] + 0.1 * rng.standard_normal(rows)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def _config(workdir: Path, tasks: list[str], path: str = "t.csv") -> dict:
    return {
        "dataset": {"name": "table", "path": path, "features": FEATURES,
                    "targets": dict.fromkeys(tasks, "regression")},
        "sweep": {"orders": [1], "sizes": ["full"], "all_in_one": True},
        "model": {"hidden": [8]},
        "training": {"epochs": 1, "batch_size": 32},
        "selection": {"budgets": [1, 2]},
    }  # fmt: skip


@pytest.mark.slow
@settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(names=st.lists(task_name, min_size=2, max_size=3).filter(_distinct))
@example(names=["digit in {1,7}", "a'b\"c*/+@\\%{0}", "Ångström 漢 🧪 {}"])
def test_any_name_validate_accepts_runs_through_the_workflow(names: list[str]) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="names-"))
    try:
        _table(workdir / "t.csv", names)
        config = _config(workdir, names)
        write_config(workdir, config)
        resolved = resolve_config(
            {**config, "dataset": {**config["dataset"], "path": str(workdir / "t.csv")}}
        )
        assert resolved["dataset"]["tasks"] == names
        snakemake(workdir)
        results = workdir / "results"
        metrics = pq.read_table(results / "metrics.parquet").to_pandas()
        assert set(metrics["task"]) == set(names)
        groupings = pq.read_table(results / "groupings.parquet").to_pandas()
        assert not groupings.empty
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize("bad", ["two\nlines", "nul\x00", "cr\r", "tab\tbed", "sep\u2028x"])
def test_a_name_that_can_never_work_is_refused_naming_it(tmp_path: Path, bad: str) -> None:
    # Parquet: any column name reaches the name check (a CSV header cannot hold a newline).
    _table(tmp_path / "t.parquet", ["fine", bad])
    config = _config(tmp_path, ["fine", bad], str(tmp_path / "t.parquet"))
    with pytest.raises(ConfigError) as err:
        resolve_config(config, check_data=False)
    assert repr(bad) in str(err.value)
