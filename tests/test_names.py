"""Any task names, any number of tasks: network names, file stems, collisions, the built-in
ToxCast data (617 tasks) and the vectorised split check."""

from __future__ import annotations

import time
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import ConfigError, DataWarning, resolve_config
from pipeline.datasets import DatasetError, load_dataset
from pipeline.datasets.base import Dataset, check_task_names
from pipeline.datasets.builtin import TOX21_TASKS
from pipeline.split import check_split, make_split
from pipeline.sweep import MAX_STEM, Network, count_networks, plan_networks

ODD = [
    "trailing newline\n",
    "Neoplasms benign, malignant and unspecified (incl cysts and polyps)",
    "a+b",
    "x/y",
    "Ångström µ-assay",
    "50% inhibition @ 10 µM",
]


def test_released_networks_keep_their_names_and_files() -> None:
    # Seeds derive from the name and results are found by file name: both must not move.
    net = Network(("NR-AR", "SR-p53"), "full")
    assert net.name == net.key == "NR-AR+SR-p53@full"
    assert net.stem == "NR-AR+SR-p53"
    tox21 = Network(TOX21_TASKS, "full")  # the demo's all-in-one network
    assert tox21.stem == "+".join(TOX21_TASKS) and tox21.name == tox21.stem + "@full"


@pytest.mark.parametrize("task", ODD)
def test_odd_names_get_a_short_safe_stem_and_a_verbatim_name(task: str) -> None:
    net = Network((task, "plain"), "half")
    assert task in net.name.replace("\\+", "+").replace("\\@", "@")
    assert "/" not in net.stem and "~2t~" in net.stem and len(net.stem) <= MAX_STEM
    assert net.stem.isascii()


def test_the_task_tuple_is_the_identity_not_the_joined_string() -> None:
    a, b = Network(("a+b", "c"), "full"), Network(("a", "b+c"), "full")
    assert a.name != b.name and a.stem != b.stem and a.key != b.key


def test_617_tasks_give_bounded_names_and_stems() -> None:
    tasks = tuple(f"assay number {i}, (long name) / variant" for i in range(617))
    net = Network(tasks, "full")
    assert len(net.stem) <= MAX_STEM and len(net.name) < 300
    assert "617 tasks" in net.name and net.name.endswith("@full")
    assert Network(tasks[:-1], "full").name != net.name  # the hash tells them apart


@pytest.mark.parametrize(
    "first, second",
    [
        (unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")),
        ("NR-AR", "NR-AR "),
        ("same", "same"),
    ],
)
def test_colliding_task_names_are_refused_naming_both(first: str, second: str) -> None:
    with pytest.raises(DatasetError) as err:
        check_task_names([first, "other", second], "my.csv")
    assert repr(second) in str(err.value) and "my.csv" in str(err.value)
    if first != second:
        assert repr(first) in str(err.value)


def test_empty_task_name_is_refused() -> None:
    with pytest.raises(DatasetError, match="empty"):
        check_task_names(["ok", "  "], "t")


def test_table_with_colliding_columns_is_refused_at_config_time(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"f{i}": rng.standard_normal(100) for i in range(3)})
    frame["Tox A"] = rng.integers(0, 2, 100)
    frame[" Tox A"] = rng.integers(0, 2, 100)
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    dataset = {"name": "table", "path": str(path), "features": {"prefix": "f"},
               "targets": {"Tox A": "binary", " Tox A": "binary"}}  # fmt: skip
    with pytest.raises(ConfigError) as err:
        resolve_config({"dataset": dataset, "sweep": {"orders": [1]}}, check_data=False)
    assert "'Tox A'" in str(err.value) and "' Tox A'" in str(err.value)


@pytest.mark.parametrize(
    "sweep",
    [
        {"orders": [1, 2, 3], "sizes": ["full", "half"], "all_in_one": True},
        {"orders": [1], "sizes": ["full"], "all_in_one": True},
        {"orders": [2, 5], "sizes": ["half"], "all_in_one": True},
        {"orders": [1, 3], "sizes": ["full"], "all_in_one": False},
    ],
)
def test_count_networks_matches_the_plan(sweep: dict) -> None:
    tasks = [f"t{i}" for i in range(5)]
    assert count_networks(len(tasks), sweep) == len(plan_networks(tasks, sweep))


def test_stems_are_unique_per_size() -> None:
    tasks = ODD + [f"t{i}" for i in range(4)]
    nets = plan_networks(tasks, {"orders": [1, 2, 3], "sizes": ["full", "half"],
                                 "all_in_one": True})  # fmt: skip
    assert len({(n.size, n.stem) for n in nets}) == len(nets)
    assert len({n.name for n in nets}) == len(nets)


def test_check_split_names_every_offending_task_at_once() -> None:
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, (300, 4)).astype(np.float32)
    targets[:, 1] = 0.0  # one class everywhere
    targets[:, 3] = np.nan  # no labels
    names = ("ok", "one, class", "fine", "none/at all")
    features = rng.standard_normal((300, 2)).astype(np.float32)
    data = Dataset("d", features, targets, names, ("binary",) * 4, (2,) * 4)
    labels = make_split(300, {"train": 0.8, "val": 0.1, "test": 0.1}, 0)
    with pytest.raises(DatasetError) as err:
        check_split(data, labels, list(data.task_names))
    message = str(err.value)
    assert "'one, class'" in message and "'none/at all'" in message and "'fine'" not in message
    # No labels in 3 splits, one class in train (its val/test single class only warns).
    assert "4 task/split problems" in message


# ---------------------------------------------------------------------------------- ToxCast


@pytest.fixture(scope="module")
def toxcast() -> Dataset:
    return load_dataset({"name": "toxcast"})


def test_toxcast_loads_617_tasks(toxcast: Dataset) -> None:
    assert toxcast.n_rows == 8576 and len(toxcast.task_names) == 617
    assert toxcast.features.shape == (8576, 1024) and toxcast.binary_features
    assert toxcast.mask.mean() == pytest.approx(0.290, abs=0.001)
    assert toxcast.task_names[0] == "ACEA_T47D_80hr_Negative"
    assert toxcast.task_names[-1] == "Tanguay_ZF_120hpf_YSE_up"
    assert set(np.unique(toxcast.targets[toxcast.mask])) == {0.0, 1.0}


def test_toxcast_default_split_check_is_fast_and_warns_of_the_tasks(toxcast: Dataset) -> None:
    # The default split (seed 0, 0.8/0.1/0.1) leaves 24 of the 617 tasks with one class in
    # val or test (both classes in train): warnings (NaN ROC-AUC there), not errors.
    labels = make_split(toxcast.n_rows, {"train": 0.8, "val": 0.1, "test": 0.1}, 0)
    started = time.perf_counter()
    notes = check_split(toxcast, labels, list(toxcast.task_names))
    assert time.perf_counter() - started < 2.0
    warned = {line.split("'")[1] for line in notes}
    assert len(warned) == 24 and {"NVS_ENZ_hTrkA", "TOX21_AR_BLA_Agonist_ch1"} <= warned
    assert all("ROC-AUC is NaN" in line for line in notes)
    # The default config validates; the warning names the count and the tasks.
    with pytest.warns(DataWarning, match=f"{len(notes)} task/split warning") as got:
        config = resolve_config({"dataset": {"name": "toxcast"}, "sweep": {"orders": [1]}})
    assert len(config["dataset"]["tasks"]) == 617
    assert "NVS_ENZ_hTrkA" in str(got[0].message) or len(notes) > 20


def test_toxcast_exhaustive_is_refused_before_planning_and_auto_picks_gradtag() -> None:
    with pytest.raises(ConfigError, match=r"617 tasks plan 39,\d{3},\d{3} networks"):
        resolve_config(
            {"dataset": {"name": "toxcast"}, "sweep": {"strategy": "exhaustive"}}, check_data=False
        )
    config = resolve_config({"dataset": {"name": "toxcast"}}, check_data=False)
    assert config["sweep"]["strategy"] == "gradtag"
    # Grad-TAG's first stage: the singles at both sizes and the all-in-one network.
    assert count_networks(617, config["sweep"]) == 2 * 617 + 1


def test_streaming_collect_keeps_the_global_order_and_writes_the_manifest(tmp_path: Path) -> None:
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq
    from test_schema import metrics_rows

    from pipeline.collect import collect
    from pipeline.schema import METRICS, write_table

    files = []
    for seed, tasks in ((1, ("b, c",)), (0, ("a+b", "b, c")), (0, ("b, c",)), (1, ("a+b",))):
        net = Network(tasks, "full")
        columns = metrics_rows(net.name, tasks)
        columns["seed"] = [seed] * len(columns["seed"])
        table = pa.table(columns)
        path = tmp_path / f"seed{seed}" / f"{net.stem}.parquet"
        write_table(table, path, METRICS)
        files.append(str(path))
    out = tmp_path / "metrics.parquet"
    rows = collect(files, str(out), str(tmp_path / "s.duckdb"), str(tmp_path / "networks.parquet"))
    keys = ["architecture", "weighting", "seed", "network", "task", "split", "epoch", "metric"]
    expected = pa.concat_tables(pq.read_table(f) for f in files)
    expected = expected.sort_by([(k, "ascending") for k in keys])
    collected = pq.read_table(out)
    assert rows == collected.num_rows and collected.equals(expected)
    manifest = pq.read_table(tmp_path / "networks.parquet").to_pylist()
    assert {(m["seed"], tuple(m["tasks"])) for m in manifest} == {
        (1, ("b, c",)),
        (0, ("a+b", "b, c")),
        (0, ("b, c",)),
        (1, ("a+b",)),
    }
    with duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM networks").fetchone()[0] == 4
        assert con.execute("SELECT count(*) FROM metrics").fetchone()[0] == rows
