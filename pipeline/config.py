"""Config validation: the JSON schema (``schemas/config.schema.yaml``) with defaults filled in,
then the checks a schema cannot express. Every error names the offending key, file or task."""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from pathlib import Path

import yaml

from .datasets import LOADERS, DatasetError, load_dataset
from .datasets.base import abbreviate
from .models import ARCHITECTURES, TRUNKS

# Re-exported: the schema check itself lives in .options (no torch import: `taskgroup select`).
from .options import (  # noqa: F401
    WORKFLOW_CONFIGFILE,
    ConfigError,
    ConfigWarning,
    config_files,
    emit_warning,
    load_schema,
    merge_config_layers,
    schema_defaults,
    schema_path,
    validate_schema,
)
from .split import check_split, make_split
from .strategies import AUTO, AUTO_FALLBACK, build_strategy, resolve_strategy
from .sweep import count_networks, half_deploy_cost, resolve_sizes, sweep_methods
from .weighting import WEIGHTINGS


class DataWarning(UserWarning):
    """The config runs, but something about the data deserves a look (e.g. a task with one
    class in the val or test split: NaN ROC-AUC there)."""


def resolve_config(config: dict, check_data: bool = True, warn=None) -> dict:
    """Validate ``config`` and fill ``dataset.tasks``; with ``check_data``, load the dataset and
    the split to check every task has labels in every split and both classes in train. A
    single class in val/test is a :class:`DataWarning` (NaN ROC-AUC there, losses kept),
    issued with :func:`warnings.warn`, or passed as text to ``warn`` when given."""
    config = validate_schema(config, warn=warn)
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
    auto = (config["sweep"].get("strategy") or AUTO) == AUTO
    try:
        config["sweep"]["strategy"] = resolve_strategy(config["sweep"], len(tasks))
        strategy = build_strategy(config["sweep"])
        strategy.check(config["dataset"]["tasks"])
        try:
            strategy.check_config(config, data)
        except ValueError as err:
            fallback = AUTO_FALLBACK.get(strategy.name) if auto else None
            if fallback is None:
                raise
            # auto's choice does not fit this model or these tasks: what validate accepts runs.
            message = f"sweep.strategy auto: {strategy.name} does not apply ({err}); {fallback}"
            emit_warning(warn, message, ConfigWarning)
            config["sweep"]["strategy"] = fallback
            strategy = build_strategy(config["sweep"])
            strategy.check(config["dataset"]["tasks"])
            strategy.check_config(config, data)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    _resolve_sizes(config, len(tasks), warn)
    planned = count_networks(len(tasks), config["sweep"])
    if planned > config["sweep"]["max_networks"]:
        raise ConfigError(
            f"config key sweep.orders: orders {config['sweep']['orders']} over {len(tasks)} tasks "
            f"plan {planned:,} networks, more than sweep.max_networks "
            f"({config['sweep']['max_networks']:,}); select fewer dataset.tasks or lower orders "
            "(e.g. sweep.orders: [1] with the all-in-one network)"
        )
    check_model(config, data, build=check_data)
    if check_data and data.dropped_features:
        message = (
            f"config key dataset.features: {len(data.dropped_features)} constant feature "
            f"column(s) dropped (one value in every row of {dataset_cfg['path']}): "
            f"{abbreviate(data.dropped_features)}; dataset.constant_features: refuse stops "
            "instead"
        )
        emit_warning(warn, message, DataWarning)
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
            emit_warning(warn, message, DataWarning)
        check_training_step(config, data, labels)
    return config


def _resolve_sizes(config: dict, n_tasks: int, warn) -> None:
    """``sweep.sizes: auto`` as the list it means; a listed half size no budget can deploy is
    a warning (its trainings serve nothing)."""
    sweep, selection = config["sweep"], config["selection"]
    budgets, tolerance = selection["budgets"], selection["cost_tolerance"]
    listed = sweep["sizes"]
    sweep["sizes"] = resolve_sizes(n_tasks, sweep, budgets, tolerance)
    need = half_deploy_cost(n_tasks, sweep)
    if listed != "auto" and "half" in listed and max(budgets) + tolerance < need < math.inf:
        message = (
            f"config key sweep.sizes: half-width networks are listed but no budget can deploy "
            f"one (a grouping holding one costs at least {need:g} units, the largest budget is "
            f"{max(budgets):g}): {n_tasks} trainings serve nothing; sweep.sizes: auto skips them"
        )
        emit_warning(warn, message, DataWarning, stacklevel=3)


def sizes_note(config: dict) -> str:
    """One line on the sizes a resolved config trains and why (validate prints it)."""
    n_tasks, sweep = len(config["dataset"]["tasks"]), config["sweep"]
    need, top = half_deploy_cost(n_tasks, sweep), max(config["selection"]["budgets"])
    if need == math.inf:
        return f"sizes {', '.join(sweep['sizes'])}: no single-task networks (sweep.orders)"
    if "half" in sweep["sizes"]:
        return (
            f"sizes {', '.join(sweep['sizes'])}: a grouping with a half-width single-task "
            f"network costs at least {need:g} units, within the largest budget {top:g}"
        )
    return (
        f"sizes {', '.join(sweep['sizes'])}: no half-width networks; a grouping with one costs "
        f"at least {need:g} units, more than the largest budget {top:g}"
    )


def check_model(config: dict, data, build: bool = True) -> None:
    """Refuse a model that cannot fit the data before any job runs: the trunk against the
    inputs (tables: mlp or your own; images: conv or your own) and the tasks (dense tasks need
    spatial output), architectures a trunk cannot serve (their ``trunks``); with ``build``, each
    network size of a user's trunk is built and probed on two samples, so a trunk that does not
    import, returns the wrong shape or has no parameters is named here (ConfigError).
    :func:`check_training_step` then trains one step of every network kind."""
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
    refusals = {a: ARCHITECTURES[a].refusal(trunk) for a in sorted(architectures)}
    bad = [a for a, why in refusals.items() if why]
    if bad:
        usable = [a for a, cls in ARCHITECTURES.items() if not cls.refusal(trunk)]
        why = "; ".join(refusals[a] for a in bad)
        raise ConfigError(
            f"config key model.architecture / sweep.methods: {bad} cannot be built over "
            f"model.trunk {trunk!r} ({why}); over it use {usable}"
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

    shape = ModelShape.of(data, config["model"])
    dims = [data.output_dim(t) for t in tasks]
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
            del model  # built to name a trunk that cannot serve it; trained below


def check_training_step(config: dict, data, labels) -> None:
    """One training step, forward and backward, of each architecture and size the sweep trains,
    over all the selected tasks, on the first training batch: through the Trainer itself, so the
    network, its inputs (a sparse batch for 0/1 fingerprints, standardised tensors otherwise),
    the losses and the gradients are those every job will compute. Whatever fails there fails
    here, before any job runs (ConfigError naming the network and the trunk)."""
    import torch

    from .sweep import network_spec
    from .training import Trainer

    tasks = tuple(config["dataset"]["tasks"])
    seed = int(config["sweep"]["seeds"][0])
    trunk = config["model"].get("trunk", "mlp")
    checked = set()
    for architecture, weighting in sweep_methods(config):
        for size in config["sweep"]["sizes"]:
            if (architecture, size) in checked:
                continue
            checked.add((architecture, size))
            spec = network_spec(config, tasks, size, seed, architecture, weighting)
            try:
                trainer = Trainer(data, labels, spec, torch.device("cpu"))
                model = trainer.build_model()
                model.train()
                batch = trainer.epoch_batches()[0]
                trainer.task_losses(model, batch).sum().backward()
            except Exception as err:
                raise ConfigError(
                    f"config key model.trunk {trunk!r}: the {size}-size {architecture} network of "
                    f"the {len(tasks)} selected task(s) fails a training step (forward and "
                    f"backward on a training batch of {_batch_rows(config, labels)} rows, as every "
                    f"job feeds it): {type(err).__name__}: {err}"
                ) from None


def _batch_rows(config: dict, labels) -> int:
    return int(min(config["training"]["batch_size"], (labels == "train").sum()))


def _known_hint(unknown: list[str], known: tuple[str, ...]) -> str:
    """The known task names, or for large datasets the closest ones: 617 names are no hint."""
    if len(known) <= 30:
        return f"known: {list(known)}"
    close = {t: difflib.get_close_matches(t, known, n=3, cutoff=0.6) for t in unknown[:5]}
    return f"{len(known)} known tasks; closest: {close}"


def load_config_file(
    path: str | Path | Sequence[str | Path],
    check_data: bool = True,
    warn=None,
    base: str | Path | None = WORKFLOW_CONFIGFILE,
) -> dict:
    """The effective config of ``snakemake --configfile path`` run in this working directory:
    ``base`` (./config.yaml, the Snakefile's configfile) where it exists, ``path`` (one file or
    several, in order) merged over it (:func:`merge_config_layers`), then validated."""
    files = config_files(path, base)
    layers = []
    for file in files:
        with open(file) as fh:
            layers.append(yaml.safe_load(fh) or {})
    try:
        return resolve_config(merge_config_layers(layers), check_data=check_data, warn=warn)
    except ConfigError as err:
        raise ConfigError(f"{' + '.join(map(str, files))}: {err}") from err
