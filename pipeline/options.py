"""The config schema file (``schemas/config.schema.yaml``) as data: the one place where every
default is written, method options included (the method classes read theirs from here), and
the schema check with defaults filled (:func:`validate_schema`; pipeline.config adds the data
checks). Imports no torch: the selection CLI validates its config here."""

from __future__ import annotations

import copy
import functools
import re
import warnings
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import jsonschema
import yaml


class ConfigError(ValueError):
    """The config cannot run; the message says which key and why."""


class ConfigWarning(UserWarning):
    """The config runs, read in a way worth knowing (e.g. a repeated budget counted once)."""


def emit_warning(warn, message: str, category: type[Warning], stacklevel: int = 2) -> None:
    """``warn(message)`` where the caller passed a callback (Snakemake's logger, the CLI's
    stderr), else a Python warning of ``category`` pointing ``stacklevel`` frames above the
    caller."""
    if warn is not None:
        warn(message)
    else:
        warnings.warn(category(message), stacklevel=stacklevel + 1)


def schema_path() -> Path:
    # The schema lives at the repo root (schemas/) for Snakemake users and ships in the package.
    root = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"
    if root.exists():
        return root
    return Path(str(resources.files("pipeline").joinpath("config.schema.yaml")))


@functools.cache
def load_schema() -> dict:
    return yaml.safe_load(schema_path().read_text())


def schema_defaults(*path: str) -> dict:
    """The defaults of the object at ``path`` of the config (e.g. ``("training", "dwa")``)."""
    node = load_schema()
    for key in path:
        node = node["properties"][key]
    return {k: copy.deepcopy(v["default"]) for k, v in node["properties"].items() if "default" in v}


def method_defaults(method: str) -> dict:
    """A training method's options with their defaults (``training.<method>`` in the config)."""
    return schema_defaults("training", method)


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _key(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _unknown_keys(error: jsonschema.ValidationError) -> list[str]:
    """The keys an additionalProperties / unevaluatedProperties error is about (jsonschema
    names them as their reprs in the message)."""
    instance = error.instance if isinstance(error.instance, dict) else {}
    return [k for k in instance if repr(k) in error.message]


def _leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The errors worth reporting for ``error``. A oneOf / anyOf error is replaced by the errors
    of the alternatives the value's type fits (a mapping is judged by the mapping branch, not
    also told it is not a string), so ``classes: 1`` says its minimum instead of "not valid
    under any of the given schemas"."""
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        return [error]
    branches: dict[object, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = [
        subs
        for subs in branches.values()
        if not any(s.validator == "type" and not s.relative_path for s in subs)
    ]
    if not fitting:
        return [error]
    return [leaf for subs in fitting for sub in subs for leaf in _leaves(sub)]


def _message(error: jsonschema.ValidationError, schema: dict) -> list[str]:
    if error.validator not in ("additionalProperties", "unevaluatedProperties"):
        return [f"config key {_key(error)}: {error.message}"]
    where = [str(p) for p in error.absolute_path]
    kind = ""
    known = sorted(error.schema.get("properties", {})) if isinstance(error.schema, dict) else []
    if where == ["dataset"] and isinstance(error.instance, dict):
        kind = f" of a {error.instance.get('name')!r} dataset"
    hint = f"; known: {', '.join(known)}" if known else ""
    lines = []
    for extra in _unknown_keys(error) or ["?"]:
        key = ".".join([*where, str(extra)])
        lines.append(f"config key {key}: unknown key{kind} (typo?){hint}")
    return lines


def dataset_schema(dataset: object) -> dict:
    """The schema of ``dataset`` alone: the keys every dataset has plus those of its kind
    (``dataset.name``), any other key refused. One kind is checked, so one bad value is one
    error, never also "unknown key" for the valid keys of its kind (unevaluatedProperties
    over failed if/then branches did that). An unknown or missing name is the only error."""
    node = load_schema()["properties"]["dataset"]
    branch = {
        key: copy.deepcopy(value)
        for key, value in node.items()
        if key not in ("allOf", "unevaluatedProperties")
    }
    name = dataset.get("name") if isinstance(dataset, dict) else None
    if name not in node["properties"]["name"]["enum"]:
        return branch
    for rule in node.get("allOf", []):
        if rule["if"]["properties"]["name"].get("const") == name:
            then = rule["then"]
            branch["properties"].update(copy.deepcopy(then.get("properties", {})))
            branch["required"] = [*node.get("required", []), *then.get("required", [])]
    branch["additionalProperties"] = False
    return branch


# YAML 1.1 (PyYAML, Snakemake) reads a float written without a dot, like 1e9 or 5e-4, as a
# string; YAML 1.2 and JSON read a number. Where the schema wants a number, such a string is
# read as the number it spells, so both spellings mean the same config.
YAML11_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+")


def _as_number(error: jsonschema.ValidationError) -> float | int | None:
    wanted = error.validator_value
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    text = error.instance
    if not isinstance(text, str) or not YAML11_FLOAT.fullmatch(text.strip()):
        return None
    value = float(text)
    if "number" in wanted:
        return value
    if "integer" in wanted and value.is_integer():
        return int(value)
    return None


def _set(config: dict, path, value) -> None:
    *parents, last = list(path)
    node = config
    for key in parents:
        node = node[key]
    node[last] = value


def validate_schema(config: dict, warn=None) -> dict:
    """A copy of ``config`` with defaults filled; ConfigError naming the key if invalid.
    Numbers YAML 1.1 read as strings (``1e9``) are read as numbers; repeated budgets are
    dropped with a warning (``warn(text)``, else :func:`warnings.warn`)."""
    schema = dict(load_schema())
    config = copy.deepcopy(config)
    schema["properties"] = dict(schema["properties"])
    schema["properties"]["dataset"] = dataset_schema(config.get("dataset", {"name": "tox21"}))
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    # Defaults go in on a first pass; a second pass reports errors against the filled config.
    for error in list(validator.iter_errors(config)):
        if error.validator == "type" and (number := _as_number(error)) is not None:
            _set(config, error.absolute_path, number)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        leaves = [leaf for error in errors for leaf in _leaves(error)]
        lines = list(dict.fromkeys(line for leaf in leaves for line in _message(leaf, schema)))
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines))
    budgets = config.get("selection", {}).get("budgets")
    if budgets:
        unique = list(dict.fromkeys(budgets))
        if len(unique) < len(budgets):
            repeated = sorted({b for b in budgets if budgets.count(b) > 1})
            message = (
                f"config key selection.budgets: repeated budget(s) {repeated} counted once "
                f"({len(budgets)} listed, {len(unique)} distinct)"
            )
            emit_warning(warn, message, ConfigWarning)
            config["selection"]["budgets"] = unique
    return config


# The Snakefile's `configfile:`, relative to the working directory (Snakemake's rule): the first
# layer of the effective config wherever it exists, under every --configfile.
WORKFLOW_CONFIGFILE = "config.yaml"


def merge_config_layers(layers: Sequence[dict]) -> dict:
    """The effective config of ``layers`` (first the workflow's config.yaml, then each
    --configfile, then --config), as Snakemake merges them: later values win and mappings merge
    key by key (snakemake.utils.update_config), except ``dataset``: a later layer's dataset
    replaces the earlier one whole, so the targets or tasks of two datasets never mix."""
    merged: dict = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if key == "dataset" or not isinstance(value, Mapping):
                merged[key] = copy.deepcopy(value)
            else:
                merged[key] = _deep_merge(merged.get(key), value)
    return merged


def _deep_merge(base, update: Mapping) -> dict:
    out = copy.deepcopy(dict(base)) if isinstance(base, Mapping) else {}
    for key, value in update.items():
        out[key] = (
            _deep_merge(out.get(key), value) if isinstance(value, Mapping) else copy.deepcopy(value)
        )
    return out


def config_files(
    paths: str | Path | Sequence[str | Path], base: str | Path | None = WORKFLOW_CONFIGFILE
) -> list[Path]:
    """The files of the effective config, in merge order: ``base`` (the workflow's config.yaml
    in the working directory) where it exists and is not one of ``paths``, then ``paths``."""
    given = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    for path in given:
        if not path.exists():
            raise FileNotFoundError(f"--configfile {path}: no such file")
    files = list(given)
    if base is not None and Path(base).exists():
        if not any(path.resolve() == Path(base).resolve() for path in given):
            files.insert(0, Path(base))
    return files
