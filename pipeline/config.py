"""Config validation: the JSON schema (``schemas/config.schema.yaml``) with defaults filled in,
then the checks a schema cannot express. Every error names the offending key, file or task."""

from __future__ import annotations

import difflib
import warnings
from pathlib import Path

import yaml

from .datasets import LOADERS, DatasetError, load_dataset
from .models import ANY_TRUNK_ARCHITECTURES, ARCHITECTURES, NEEDS_MLP_TRUNK, TRUNKS

# Re-exported: the schema check itself lives in .options (no torch import: `taskgroup select`).
from .options import (  # noqa: F401
    ConfigError,
    load_schema,
    schema_defaults,
    schema_path,
    validate_schema,
)
from .split import check_split, make_split
from .strategies import build_strategy, resolve_strategy
from .sweep import count_networks, sweep_methods
from .weighting import WEIGHTINGS


class DataWarning(UserWarning):
    """The config runs, but something about the data deserves a look (e.g. a task with one
    class in the val or test split: NaN ROC-AUC there)."""


def resolve_config(config: dict, check_data: bool = True, warn=None) -> dict:
    """Validate ``config`` and fill ``dataset.tasks``; with ``check_data``, load the dataset and
    the split to check every task has labels in every split and both classes in train. A
    single class in val/test is a :class:`DataWarning` (NaN ROC-AUC there, losses kept),
    issued with :func:`warnings.warn`, or passed as text to ``warn`` when given."""
    config = validate_schema(config)
    dataset_cfg = config["dataset"]
    if dataset_cfg["name"] not in LOADERS:
        raise ConfigError(f"config key dataset.name: unknown dataset {dataset_cfg['name']!r}")
    if config["model"]["architecture"] not in ARCHITECTURES:
        raise ConfigError(
            f"config key model.architecture: unknown {config['model']['architecture']!r}; "
            f"known: {sorted(ARCHITECTURES)}"
        )
    if config["training"]["weighting"] not in WEIGHTINGS:
        raise ConfigError(
            f"config key training.weighting: unknown {config['training']['weighting']!r}; "
            f"known: {sorted(WEIGHTINGS)}"
        )
    try:
        data = load_dataset(dataset_cfg)
    except DatasetError as err:
        raise ConfigError(str(err)) from err
    except KeyError as err:
        raise ConfigError(f"config key dataset.{err.args[0]}: required") from err
    tasks = dataset_cfg.get("tasks") or list(data.task_names)
    known = set(data.task_names)
    for key, listed in (("tasks", tasks), ("exclude_tasks", dataset_cfg.get("exclude_tasks", []))):
        unknown = [t for t in listed if t not in known]
        if unknown:
            raise ConfigError(
                f"config key dataset.{key}: unknown task(s) {unknown} for dataset "
                f"{data.name!r}; {_known_hint(unknown, data.task_names)}"
            )
    excluded = set(dataset_cfg.get("exclude_tasks", []))
    tasks = [t for t in tasks if t not in excluded]
    if not tasks:
        raise ConfigError("config key dataset.exclude_tasks: leaves no task to sweep")
    # Canonical (dataset) order, so a network has one name whatever order the config lists.
    selected = set(tasks)
    config["dataset"]["tasks"] = [t for t in data.task_names if t in selected]
    try:
        config["sweep"]["strategy"] = resolve_strategy(config["sweep"], len(tasks))
        strategy = build_strategy(config["sweep"])
        strategy.check(config["dataset"]["tasks"])
        strategy.check_config(config, data)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    planned = count_networks(len(tasks), config["sweep"])
    if planned > config["sweep"]["max_networks"]:
        raise ConfigError(
            f"config key sweep.orders: orders {config['sweep']['orders']} over {len(tasks)} tasks "
            f"plan {planned:,} networks, more than sweep.max_networks "
            f"({config['sweep']['max_networks']:,}); select fewer dataset.tasks or lower orders "
            "(e.g. sweep.orders: [1] with the all-in-one network)"
        )
    check_model(config, data, build=check_data)
    if check_data:
        try:
            labels = make_split(data.n_rows, config["split"]["fractions"], config["split"]["seed"])
            notes = check_split(data, labels, tasks)
        except DatasetError as err:
            raise ConfigError(f"config key split / dataset.tasks: {err}") from err
        if notes:
            shown = "\n    ".join(notes[:20]) + (
                f"\n    ... and {len(notes) - 20} more" if len(notes) > 20 else ""
            )
            message = f"{len(notes)} task/split warning(s):\n    {shown}"
            if warn is not None:
                warn(message)
            else:
                warnings.warn(DataWarning(message), stacklevel=2)
    return config


def check_model(config: dict, data, build: bool = True) -> None:
    """Refuse a model that cannot fit the data before any job runs: the trunk against the
    inputs (tables: mlp or your own; images: conv or your own) and the tasks (dense tasks need
    spatial output), architectures other trunks do not support; with ``build``, each network
    size of a user's trunk is built and run on two samples, so a trunk that does not import,
    returns the wrong shape or has no parameters is named here (ConfigError)."""
    trunk = config["model"]["trunk"]
    images = data.features.ndim == 4
    tasks = config["dataset"]["tasks"]
    dense = [data.is_dense(t) for t in tasks]
    if trunk == "mlp":
        if images:
            raise ConfigError(
                f"config key model.trunk: mlp needs inputs (N, features); dataset "
                f"{data.name!r} has images {data.features.shape[1:]}: use conv or your own trunk"
            )
        return
    architectures = {a for a, _ in sweep_methods(config)}
    bad = sorted(architectures - set(ANY_TRUNK_ARCHITECTURES))
    if bad:
        why = "; ".join(f"{a}: {NEEDS_MLP_TRUNK.get(a, 'not implemented')}" for a in bad)
        raise ConfigError(
            f"config key model.architecture / sweep.methods: {bad} need the mlp trunk ({why}); "
            f"over model.trunk {trunk!r} use {list(ANY_TRUNK_ARCHITECTURES)}"
        )
    if trunk == "conv":
        if not images:
            raise ConfigError(
                f"config key model.trunk: conv needs images (N, channels, H, W); dataset "
                f"{data.name!r} has inputs of shape {data.features.shape}"
            )
        if "conv" not in TRUNKS:
            raise ConfigError("config key model.trunk: the conv trunk is not available here")
    if not build:
        return
    import torch

    from .models import (
        SIZE_FRACTIONS,
        ModelShape,
        TrunkError,
        build_model,
        build_trunk,
        widths_for_size,
    )

    shape = ModelShape(
        in_features=data.features.shape[1],
        hidden=tuple(config["model"]["hidden"]),
        head_hidden=tuple(config["model"]["head_hidden"]),
        input_shape=tuple(int(d) for d in data.features.shape[1:]),
        trunk=trunk,
        label_size=data.label_size,
        reference_dense=bool(data.dense_targets),
    )
    dims = [data.output_dim(t) for t in tasks]
    x = torch.from_numpy(data.features[:2].astype("float32"))
    for size in config["sweep"]["sizes"]:
        fraction = SIZE_FRACTIONS[size]
        try:
            widths = widths_for_size("hard_sharing", shape, size)
            trunk_module = build_trunk(shape, widths, torch.Generator(), fraction)
        except TrunkError as err:
            raise ConfigError(f"config key {err} ({size}-size network)") from None
        spatial = bool(getattr(trunk_module, "spatial", False))
        out_shape = getattr(trunk_module, "out_shape", (trunk_module.out_features, "H", "W"))
        out = ", ".join(map(str, out_shape))
        if any(dense) and not spatial:
            raise ConfigError(
                f"config key model.trunk {trunk!r}: returns (batch, {out}) but dense tasks "
                f"{[t for t, d in zip(tasks, dense) if d]} need (batch, channels, H, W)"
            )
        if spatial and not any(dense):
            raise ConfigError(
                f"config key model.trunk {trunk!r}: returns spatial output (batch, {out}) but "
                f"dataset {data.name!r} has no dense task; return (batch, features)"
            )
        # A user's trunk under MTAN must expose its stages (forward_stages); the conv trunk does.
        staged = "mtan" in architectures and trunk != "conv"
        checked = ["hard_sharing", "mtan"] if staged else ["hard_sharing"]
        for architecture in checked:
            try:
                model = build_model(
                    architecture, shape, widths, dims, torch.Generator(), dense, fraction
                )
            except TrunkError as err:
                raise ConfigError(
                    f"config key {err} (architecture {architecture}, {size}-size network)"
                ) from None
            try:
                with torch.no_grad():
                    model.eval()(x)
            except Exception as err:
                raise ConfigError(
                    f"config key model.trunk {trunk!r}: the {size}-size {architecture} network "
                    f"fails on two samples: {type(err).__name__}: {err}"
                ) from None


def _known_hint(unknown: list[str], known: tuple[str, ...]) -> str:
    """The known task names, or for large datasets the closest ones: 617 names are no hint."""
    if len(known) <= 30:
        return f"known: {list(known)}"
    close = {t: difflib.get_close_matches(t, known, n=3, cutoff=0.6) for t in unknown[:5]}
    return f"{len(known)} known tasks; closest: {close}"


def load_config_file(path: str | Path, check_data: bool = True, warn=None) -> dict:
    with open(path) as fh:
        raw = yaml.safe_load(fh) or {}
    try:
        return resolve_config(raw, check_data=check_data, warn=warn)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
