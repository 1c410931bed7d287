"""Ready for users on a shared cluster: one source of truth for names and defaults, a strict
dataset section, the built-in datasets' default configs, your own table done right (empty
files, string labels, gaps in class ids, which networks a data change retrains), the CLI."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.cli import build_parser, main
from pipeline.config import ConfigError, DataWarning, resolve_config
from pipeline.datasets import DatasetError, load_dataset, network_dataset, split_params
from pipeline.datasets.table import load_table
from pipeline.models import ARCHITECTURES
from pipeline.models.adashare import DEFAULTS as ADASHARE_DEFAULTS
from pipeline.options import load_schema, method_defaults
from pipeline.sweep import network_spec, spec_hash
from pipeline.weighting import WEIGHTINGS, build_weighting

# ------------------------------------------------------------------- one source of truth


def _props(*path: str) -> dict:
    node = load_schema()
    for key in path:
        node = node["properties"][key]
    return node


def test_schema_enums_are_the_registries() -> None:
    assert _props("model", "architecture")["enum"] == list(ARCHITECTURES)
    assert _props("training", "weighting")["enum"] == list(WEIGHTINGS)
    items = _props("sweep", "methods")["items"]["properties"]
    assert items["architecture"]["enum"] == list(ARCHITECTURES)
    assert items["weighting"]["enum"] == list(WEIGHTINGS)


def test_method_option_defaults_are_the_schemas() -> None:
    # The classes read the schema: written once. The values pin what the README documents.
    assert ADASHARE_DEFAULTS == method_defaults("adashare")
    assert ADASHARE_DEFAULTS["sparsity_weight"] == 0.05 and ADASHARE_DEFAULTS["tau"] == 5.0
    assert build_weighting("dwa", 3).temperature == method_defaults("dwa")["temperature"] == 2.0
    assert build_weighting("gradnorm", 3).alpha == method_defaults("gradnorm")["alpha"] == 1.5
    assert build_weighting("dwa", 3, {"temperature": 0.5}).temperature == 0.5


def test_an_unknown_architecture_is_refused_by_the_schema() -> None:
    with pytest.raises(ConfigError, match=r"config key model.architecture: 'mtl' is not one of"):
        resolve_config({"dataset": {"name": "tox21"}, "model": {"architecture": "mtl"}},
                       check_data=False)  # fmt: skip


# ---------------------------------------------------------------- strict dataset section


@pytest.mark.parametrize(
    ("dataset", "key"),
    [
        ({"name": "yeast", "taks": ["y0"]}, "dataset.taks"),
        ({"name": "yeast", "path": "x.csv"}, "dataset.path"),
        ({"name": "tox21", "rows": 100}, "dataset.rows"),
        ({"name": "synthetic", "targets": {"y": "binary"}}, "dataset.targets"),
        (
            {
                "name": "table",
                "path": "x.csv",
                "features": ["a"],
                "targets": {"y": "binary"},
                "rows": 10,
            },
            "dataset.rows",
        ),  # fmt: skip
    ],
)
def test_unknown_or_foreign_dataset_keys_are_refused_naming_them(dataset, key) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_config({"dataset": dataset}, check_data=False)
    message = str(err.value)
    assert f"config key {key}: unknown key of a {dataset['name']!r} dataset (typo?)" in message
    assert message.count("unknown key") == 1


# -------------------------------------------------------- built-in datasets, default config


@pytest.mark.parametrize(
    ("name", "tasks", "warned"),
    [("tox21", 12, None), ("yeast", 14, "'y13'"), ("toxcast", 617, "24 tasks")],  # fmt: skip
)
def test_builtin_datasets_validate_with_the_default_config(
    tmp_path: Path, capsys, name: str, tasks: int, warned: str | None
) -> None:
    config = yaml.safe_load((Path(__file__).resolve().parent.parent / "config.yaml").read_text())
    config["dataset"] = {"name": name}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["validate", "--configfile", str(path)]) == 0
    out, err = capsys.readouterr()
    assert f"valid; {tasks} tasks" in out
    if warned is None:
        assert "warning" not in err
    elif warned == "24 tasks":
        lines = [ln for ln in err.splitlines() if "ROC-AUC is NaN" in ln]
        assert err.startswith("warning:") and len(lines) == 20 and "more" in err
    else:
        assert "warning:" in err and warned in err and "ROC-AUC is NaN" in err


# ------------------------------------------------------------------------------ your table


def _frame(rows: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({f"x{i}": rng.standard_normal(rows) for i in range(3)})
    frame["a"] = rng.integers(0, 2, rows)
    frame["b"] = rng.standard_normal(rows)
    return frame


ORDER1 = {"sweep": {"orders": [1]}}


def _table_config(path: Path, targets: dict) -> dict:
    return {"name": "table", "path": str(path), "features": {"prefix": "x"}, "targets": targets}


def test_an_empty_csv_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(DatasetError, match=r"empty\.csv is empty \(0 bytes\)"):
        load_table(_table_config(path, {"a": "binary"}))


def test_a_header_only_csv_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("x0,x1,a\n")
    with pytest.raises(DatasetError, match=r"header\.csv has a header but no data rows"):
        load_table(_table_config(path, {"a": "binary"}))


def test_string_class_labels_are_mapped_and_recorded(tmp_path: Path) -> None:
    frame = _frame(9)
    frame["family"] = ["dog", "cat", "eel", "cat", None, "dog", "eel", "eel", "cat"]
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    data = load_table(_table_config(path, {"family": "multiclass", "a": "binary"}))
    assert data.n_classes == (3, 2)
    assert data.class_labels == {"family": ("cat", "dog", "eel")}
    y = data.targets[:, 0]
    assert y[:4].tolist() == [1.0, 0.0, 2.0, 0.0] and np.isnan(y[4])


def test_class_ids_with_gaps_are_remapped_and_recorded(tmp_path: Path) -> None:
    frame = _frame(6)
    frame["kind"] = [3, 7, 9, 7, None, 3]
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    data = load_table(_table_config(path, {"kind": "multiclass"}))
    assert data.n_classes == (3,)  # not 10 outputs for 3 classes
    assert data.class_labels == {"kind": ("3", "7", "9")}
    assert data.targets[[0, 1, 2, 3, 5], 0].tolist() == [0.0, 1.0, 2.0, 1.0, 0.0]
    frame["kind"] = [0, 1, 2, 1, None, 0]  # already 0..k-1: used as is, nothing recorded
    frame.to_parquet(path)
    data = load_table(_table_config(path, {"kind": "multiclass"}))
    assert data.class_labels == {} and data.n_classes == (3,)
    frame["kind"] = [0.5, 1, 2, 1, None, 0]
    frame.to_parquet(path)
    with pytest.raises(DatasetError, match=r"'kind'.*non-integer values"):
        load_table(_table_config(path, {"kind": "multiclass"}))


def test_validate_prints_the_class_mapping(tmp_path: Path, capsys) -> None:
    frame = _frame(200)
    frame["family"] = np.array(["cat", "dog", "eel", "fox"])[np.arange(200) % 4]
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    config = {"dataset": _table_config(path, {"a": "binary", "family": "multiclass"}),
              "sweep": {"orders": [1]}}  # fmt: skip
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["validate", "--configfile", str(tmp_path / "c.yaml")]) == 0
    assert "task 'family': class ids 0=cat, 1=dog, 2=eel, 3=fox" in capsys.readouterr().out


def test_a_new_target_column_changes_no_existing_spec_nor_the_split(tmp_path: Path) -> None:
    frame = _frame()
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    before = resolve_config({"dataset": _table_config(path, {"a": "binary"}), **ORDER1})
    spec_a = network_spec(before, ("a",), "full", 0)
    split_before = split_params(before["dataset"])
    assert split_before == {"name": "table", "rows": 120}

    frame["c"] = np.random.default_rng(2).integers(0, 2, len(frame))
    frame.to_csv(path, index=False)
    after = resolve_config(
        {"dataset": _table_config(path, {"a": "binary", "c": "binary"}), **ORDER1}
    )
    assert network_spec(after, ("a",), "full", 0) == spec_a
    assert split_params(after["dataset"]) == split_before
    assert network_spec(after, ("a", "c"), "full", 0)["dataset"]["targets"] == {
        "a": "binary", "c": "binary"
    }  # fmt: skip


def test_editing_the_data_file_changes_exactly_the_specs_it_feeds(tmp_path: Path) -> None:
    frame = _frame()
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    targets = {"a": "binary", "b": "regression"}
    config = resolve_config({"dataset": _table_config(path, targets), **ORDER1})
    specs = {t: spec_hash(network_spec(config, t, "full", 0)) for t in [("a",), ("b",), ("a", "b")]}

    frame.loc[3, "b"] += 1.0  # one label of task b
    frame.to_csv(path, index=False)
    edited = {t: spec_hash(network_spec(config, t, "full", 0)) for t in specs}
    assert edited[("a",)] == specs[("a",)]
    assert edited[("b",)] != specs[("b",)] and edited[("a", "b")] != specs[("a", "b")]

    frame.loc[3, "x0"] += 1.0  # a feature: every network
    frame.to_csv(path, index=False)
    assert all(spec_hash(network_spec(config, t, "full", 0)) != edited[t] for t in specs)

    pd.concat([frame, frame.iloc[:5]]).to_csv(path, index=False)  # more rows: a new split
    assert split_params(config["dataset"]) == {"name": "table", "rows": 125}


def test_builtin_network_specs_are_unchanged() -> None:
    # Specs of built-in datasets keep their released form: existing results do not retrain.
    config = resolve_config({"dataset": {"name": "tox21"}}, check_data=False)
    spec = network_spec(config, ("NR-AR",), "full", 0)
    assert spec["dataset"] == {"name": "tox21"}
    assert network_dataset({"name": "yeast", "tasks": ["y0"]}, ("y0",)) == {"name": "yeast"}
    assert split_params({"name": "tox21", "exclude_tasks": ["NR-AR"]}) == {"name": "tox21"}


def test_a_training_on_the_reduced_spec_sees_the_same_data(tmp_path: Path) -> None:
    frame = _frame()
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    full = load_dataset(_table_config(path, {"a": "binary", "b": "regression"}))
    config = resolve_config(
        {"dataset": _table_config(path, {"a": "binary", "b": "regression"}), **ORDER1}
    )
    own = load_dataset(network_spec(config, ("b",), "full", 0)["dataset"])
    assert own.task_names == ("b",)
    assert np.array_equal(own.features, full.features)
    assert np.array_equal(own.targets[:, 0], full.targets[:, 1], equal_nan=True)


# ------------------------------------------------------------------------------------- CLI


def test_help_lists_only_commands_that_exist(capsys) -> None:
    parser = build_parser()
    assert parser.prog == "taskgroup"
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    out = capsys.readouterr().out
    assert "train one network" not in out and "split data" not in out
    commands = set(parser._subparsers._group_actions[0].choices)
    assert {"validate", "networks", "query", "sql", "export", "leftovers"} <= commands
    for command in commands:
        assert command in out


def test_validate_counts_every_axis(tmp_path: Path, capsys) -> None:
    config = {
        "dataset": {"name": "synthetic", "rows": 300, "features": 8, "clusters": 2,
                    "tasks_per_cluster": 2},
        "sweep": {"orders": [1, 2], "seeds": [0, 1], "sizes": ["full"],
                  "methods": [{"architecture": "hard_sharing", "weighting": "equal"},
                              {"architecture": "mtan", "weighting": "dwa"}]},
    }  # fmt: skip
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["validate", "--configfile", str(tmp_path / "c.yaml")]) == 0
    out = capsys.readouterr().out
    # 4 singles + 6 pairs + the all-in-one network = 11, x 2 seeds x 2 methods.
    assert "11 networks x 2 seed(s) x 2 training method(s)" in out and "= 44 trainings" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["select", "--budgets", "abc", "--configfile", ""],
        ["export", "--budget", "abc"],
        ["export", "--budget", "-1"],
    ],
)
def test_bad_numbers_on_the_command_line_end_without_a_traceback(argv, capsys) -> None:
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own usage error
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "abc" in err or "-1" in err


def test_a_bad_config_file_ends_without_a_traceback(tmp_path: Path, capsys) -> None:
    config = copy.deepcopy({"dataset": {"name": "yeast", "taks": ["y1"]}})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["validate", "--configfile", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert "config key dataset.taks: unknown key of a 'yeast' dataset" in err


def test_the_validate_warning_is_a_data_warning() -> None:
    # DataWarning is what the Snakefile's validation emits too (to stderr, once).
    assert issubclass(DataWarning, UserWarning)


def test_select_reads_its_config_through_the_workflow_schema(tmp_path: Path, capsys) -> None:
    (tmp_path / "c.yaml").write_text("selection: {budgets: [1, 0], objectiv: sum}\n")
    code = main(["select", "--configfile", str(tmp_path / "c.yaml"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "config key selection.budgets.1: 0 is less than or equal to the minimum of 0" in err
    assert "config key selection.objectiv: unknown key (typo?)" in err
