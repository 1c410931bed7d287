"""Config validation (defaults filled, every error names its key) and the sweep's plan."""

from __future__ import annotations

import copy
from itertools import combinations
from math import comb
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import ConfigError, DataWarning, resolve_config
from pipeline.split import make_split
from pipeline.sweep import Network, network_spec, plan_networks, spec_hash

SYNTH = {"name": "synthetic", "rows": 300, "features": 8, "clusters": 2, "tasks_per_cluster": 2}
SYNTH_TASKS = ["c0t0", "c0t1", "c1t0", "c1t1"]


def resolve(**overrides) -> dict:
    return resolve_config({"dataset": dict(SYNTH), **overrides})


# -------------------------------------------------------------------------------- defaults


def test_defaults_are_filled_and_the_input_is_untouched() -> None:
    raw = {"dataset": dict(SYNTH), "training": {"epochs": 3}}
    before = copy.deepcopy(raw)
    config = resolve_config(raw)
    assert raw == before
    assert config["dataset"]["tasks"] == SYNTH_TASKS  # all of the dataset's, in its order
    assert config["results_dir"] == "results"
    assert config["split"] == {"seed": 0, "fractions": {"train": 0.8, "val": 0.1, "test": 0.1}}
    assert config["sweep"]["orders"] == [1, 2, 3]
    assert config["sweep"]["all_in_one"] is True
    assert config["sweep"]["sizes"] == ["full", "half"]
    assert config["sweep"]["seeds"] == [0]
    assert config["model"]["architecture"] == "hard_sharing"
    assert config["model"]["head_hidden"] == []
    assert config["training"]["epochs"] == 3  # given values win
    assert config["training"]["weighting"] == "equal"
    assert config["training"]["lr"] > 0 and config["training"]["batch_size"] >= 1


def test_empty_config_is_the_tox21_sweep() -> None:
    config = resolve_config({})
    assert config["dataset"]["name"] == "tox21"
    assert len(config["dataset"]["tasks"]) == 12
    assert config["training"]["epochs"] == 10


def test_task_order_is_canonicalised_to_the_dataset_order() -> None:
    config = resolve(dataset={**SYNTH, "tasks": ["c1t1", "c0t0", "c0t1"]})
    assert config["dataset"]["tasks"] == ["c0t0", "c0t1", "c1t1"]
    names = {n.name for n in plan_networks(config["dataset"]["tasks"], config["sweep"])}
    assert "c0t0+c1t1@full" in names and "c1t1+c0t0@full" not in names


# ---------------------------------------------------------------------------------- errors


def _error(config: dict, check_data: bool = True) -> str:
    with pytest.raises(ConfigError) as err:
        resolve_config(config, check_data=check_data)
    return str(err.value)


def test_negative_epochs_names_the_key() -> None:
    message = _error({"dataset": dict(SYNTH), "training": {"epochs": -1}})
    assert "training.epochs" in message


def test_unknown_top_level_key_is_called_a_typo() -> None:
    message = _error({"dataset": dict(SYNTH), "trainig": {"epochs": 3}})
    assert "config key trainig: unknown key (typo?)" in message


def test_unknown_nested_key_names_it() -> None:
    message = _error({"dataset": dict(SYNTH), "training": {"epoch": 3}})
    assert "config key training.epoch: unknown key (typo?)" in message


def test_unknown_task_names_it() -> None:
    message = _error({"dataset": {**SYNTH, "tasks": ["c0t0", "c9t9"]}})
    assert "dataset.tasks" in message and "c9t9" in message


def test_duplicate_tasks_are_refused() -> None:
    message = _error({"dataset": {**SYNTH, "tasks": ["c0t0", "c0t1", "c0t0"]}})
    assert "dataset.tasks" in message


def test_orders_beyond_the_task_count() -> None:
    message = _error({"dataset": {**SYNTH, "tasks": ["c0t0", "c1t0"]},
                      "sweep": {"orders": [1, 2, 3]}})  # fmt: skip
    assert "sweep.orders" in message and "3" in message


def test_unknown_architecture_names_the_key() -> None:
    message = _error({"dataset": dict(SYNTH), "model": {"architecture": "soft_sharing"}})
    assert "model.architecture" in message and "soft_sharing" in message


def test_unknown_weighting_names_the_key() -> None:
    message = _error({"dataset": dict(SYNTH), "training": {"weighting": "heavy"}})
    assert "training.weighting" in message and "heavy" in message


def test_unknown_dataset_name_names_the_key() -> None:
    message = _error({"dataset": {"name": "mnist"}})
    assert "dataset.name" in message and "mnist" in message


def test_table_dataset_without_path() -> None:
    message = _error({"dataset": {"name": "table", "features": ["a"], "targets": {"y": "binary"}}})
    assert "dataset" in message and "'path'" in message


def test_table_dataset_with_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.csv"
    message = _error({"dataset": {"name": "table", "path": str(path), "features": ["a"],
                                  "targets": {"y": "binary"}}})  # fmt: skip
    assert "dataset.path" in message and "absent.csv" in message


def _user_table(tmp_path: Path, rows: int = 200) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"f{i}": rng.standard_normal(rows) for i in range(3)})
    frame["common"] = rng.integers(0, 2, rows)
    frame["rare"] = 0
    frame.loc[17, "rare"] = 1  # one positive: at most one split can see both classes
    path = tmp_path / "user.csv"
    frame.to_csv(path, index=False)
    return path


def test_binary_task_with_one_class_in_val_or_test_is_a_warning(tmp_path: Path) -> None:
    # 'rare' has its one positive in train: val and test see one class. Its loss is defined
    # there (the solve uses losses), its ROC-AUC is NaN: a warning, not an error.
    dataset = {
        "name": "table",
        "path": str(_user_table(tmp_path)),
        "features": {"prefix": "f"},
        "targets": {"common": "binary", "rare": "binary"},
    }
    labels = make_split(200, {"train": 0.8, "val": 0.1, "test": 0.1}, 0)
    assert labels[17] == "train"
    with pytest.warns(DataWarning, match=r"'rare' has only one class in the val split") as got:
        config = resolve_config({"dataset": dataset, "sweep": {"orders": [1, 2]}})
    assert config["dataset"]["tasks"] == ["common", "rare"]
    message = str(got[0].message)
    assert "test split" in message and "ROC-AUC is NaN" in message and "'common'" not in message


def test_binary_task_with_one_class_in_train_is_an_error(tmp_path: Path) -> None:
    path = _user_table(tmp_path)
    frame = pd.read_csv(path)
    frame["zeros"] = 0
    frame.to_csv(path, index=False)
    dataset = {"name": "table", "path": str(path), "features": {"prefix": "f"},
               "targets": {"common": "binary", "zeros": "binary"}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"'zeros' has only one class in the train split"):
        resolve_config({"dataset": dataset, "sweep": {"orders": [1]}})
    # Without the data check (networks, leftovers) the config is accepted.
    resolve_config({"dataset": dataset, "sweep": {"orders": [1]}}, check_data=False)


def test_too_few_rows_for_the_split() -> None:
    config = {"dataset": {**SYNTH, "rows": 60}}
    message = _error(config)
    assert "split" in message and "too few rows" in message
    resolve_config(config, check_data=False)  # the data check is what refuses it
    # Larger val/test fractions make the same rows enough.
    resolve_config({**config, "split": {"fractions": {"train": 0.6, "val": 0.2, "test": 0.2}}})


def test_split_fractions_must_sum_to_one() -> None:
    message = _error({"dataset": dict(SYNTH),
                      "split": {"fractions": {"train": 0.8, "val": 0.2, "test": 0.2}}})  # fmt: skip
    assert "split.fractions" in message


# ------------------------------------------------------------------------------------ plan


def _sweep(**kw) -> dict:
    return {"orders": [1, 2, 3], "sizes": ["full", "half"], "all_in_one": True, **kw}


@pytest.mark.parametrize("n", [4, 5, 7])
def test_plan_counts(n: int) -> None:
    tasks = [f"t{i}" for i in range(n)]
    nets = plan_networks(tasks, _sweep())
    assert len(nets) == 2 * n + comb(n, 2) + comb(n, 3) + 1
    assert len({net.name for net in nets}) == len(nets)
    assert sum(1 for net in nets if len(net.tasks) == 1 and net.size == "half") == n
    assert all(net.size == "full" for net in nets if len(net.tasks) > 1)
    assert Network(tuple(tasks), "full") in nets
    # Exactly every pair and triple, in the given task order.
    pairs = {net.tasks for net in nets if len(net.tasks) == 2}
    assert pairs == set(combinations(tasks, 2))


def test_plan_has_no_duplicate_when_orders_include_all_tasks() -> None:
    tasks = ["a", "b", "c"]
    nets = plan_networks(tasks, _sweep())
    assert len(nets) == 2 * 3 + 3 + 1  # the triple is the all-in-one network
    assert [net.name for net in nets].count("a+b+c@full") == 1
    assert len(plan_networks(tasks, _sweep(all_in_one=False))) == len(nets)


def test_plan_without_all_in_one_and_other_orders() -> None:
    tasks = [f"t{i}" for i in range(6)]
    assert len(plan_networks(tasks, _sweep(all_in_one=False))) == 12 + 15 + 20
    assert len(plan_networks(tasks, _sweep(orders=[3, 1]))) == 12 + 20 + 1
    only_pairs = plan_networks(tasks, _sweep(orders=[2], sizes=["half"], all_in_one=False))
    assert len(only_pairs) == 15 and {net.size for net in only_pairs} == {"full"}
    assert len(plan_networks(["solo"], _sweep(orders=[1]))) == 2  # no all-in-one of one task


def test_network_names_are_canonical() -> None:
    net = Network(("NR-AR", "SR-p53"), "full")
    assert net.name == "NR-AR+SR-p53@full" and net.stem == "NR-AR+SR-p53"


def test_network_spec_does_not_depend_on_the_other_tasks() -> None:
    small = resolve(dataset={**SYNTH, "tasks": ["c0t0", "c0t1"]}, sweep={"orders": [1, 2]})
    large = resolve(sweep={"orders": [1, 2]})
    a = network_spec(small, ("c0t0",), "full", 0)
    b = network_spec(large, ("c0t0",), "full", 0)
    assert a == b and spec_hash(a) == spec_hash(b)
    assert "tasks" not in a["dataset"]
    other = network_spec(resolve(training={"lr": 0.01}), ("c0t0",), "full", 0)
    assert spec_hash(other) != spec_hash(a)
    assert spec_hash(network_spec(large, ("c0t0",), "full", 1)) != spec_hash(a)


# ------------------------------------------------- one kind's errors, minimums, YAML numbers

TABLE = {"name": "table", "path": "x.csv", "features": ["a"], "targets": {"y": "binary"}}


@pytest.mark.parametrize(
    ("dataset", "line"),
    [
        (
            {**TABLE, "targets": {"y": "bogus"}},
            "config key dataset.targets.y: 'bogus' is not one of ['binary', 'multiclass', "
            "'regression']",
        ),
        ({**TABLE, "features": {"prefix": ""}}, "config key dataset.features.prefix: "),
        (
            {"name": "arrays", "path": "x.npz", "targets": {"y": {"type": "multiclass",
                                                                  "classes": 1}}},
            "config key dataset.targets.y.classes: 1 is less than the minimum of 2",
        ),
        ({**SYNTH, "rows": 5}, "config key dataset.rows: 5 is less than the minimum of 30"),
        ({"name": "tox2l", "rows": 5}, "config key dataset.name: 'tox2l' is not one of"),
    ],
)  # fmt: skip
def test_one_bad_dataset_value_is_the_one_error(dataset: dict, line: str) -> None:
    # Only the kind dataset.name names is checked: its valid keys are not also "unknown", and
    # a target's mapping form is not told it is not a string.
    message = _error({"dataset": dataset}, check_data=False)
    assert message.splitlines()[1:] == [message.splitlines()[1]]
    assert message.splitlines()[1].strip().startswith(line)
    assert "unknown key" not in message and "any of the given schemas" not in message


def test_yaml_1_1_exponent_numbers_are_numbers(tmp_path: Path) -> None:
    import yaml

    # PyYAML (and Snakemake) read 1e9 and 5e-4 as strings: YAML 1.1 floats need a dot.
    raw = yaml.safe_load(
        "selection: {budgets: [1e9, 2.5E1, 3]}\ntraining: {lr: 5e-4, epochs: 2e0}\n"
    )
    assert raw["selection"]["budgets"][0] == "1e9"
    config = resolve_config({"dataset": dict(SYNTH), **raw}, check_data=False)
    assert config["selection"]["budgets"] == [1e9, 25.0, 3]
    assert config["training"]["lr"] == 0.0005 and config["training"]["epochs"] == 2
    assert isinstance(config["training"]["epochs"], int)
    # A string that is no number stays an error, and a fractional epoch count too.
    assert "selection.budgets.0: 'lots'" in _error(
        {"dataset": dict(SYNTH), "selection": {"budgets": ["lots"]}}, check_data=False
    )
    assert "training.epochs: '2.5e0' is not of type 'integer'" in _error(
        {"dataset": dict(SYNTH), "training": {"epochs": "2.5e0"}}, check_data=False
    )


def test_repeated_budgets_are_counted_once_with_a_warning() -> None:
    said: list[str] = []
    config = resolve_config(
        {"dataset": dict(SYNTH), "selection": {"budgets": [2, 1, 2.0, 1e0, 3]}},
        check_data=False,
        warn=said.append,
    )
    assert config["selection"]["budgets"] == [2, 1, 3]
    assert said == [
        "config key selection.budgets: repeated budget(s) [1, 2] counted once "
        "(5 listed, 3 distinct)"
    ]
