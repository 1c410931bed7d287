"""The config schema file (``schemas/config.schema.yaml``) as data: the one place where every
default is written, method options included (the method classes read theirs from here), and
the schema check with defaults filled (:func:`validate_schema`; pipeline.config adds the data
checks). Imports no torch: the selection CLI validates its config here."""

from __future__ import annotations

import copy
import functools
from importlib import resources
from pathlib import Path

import jsonschema
import yaml


class ConfigError(ValueError):
    """The config cannot run; the message says which key and why."""


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


def _message(error: jsonschema.ValidationError) -> list[str]:
    if error.validator not in ("additionalProperties", "unevaluatedProperties"):
        return [f"config key {_key(error)}: {error.message}"]
    where = [str(p) for p in error.absolute_path]
    kind = ""
    if where == ["dataset"] and isinstance(error.instance, dict):
        kind = f" of a {error.instance.get('name')!r} dataset"
    lines = []
    for extra in _unknown_keys(error) or ["?"]:
        key = ".".join([*where, str(extra)])
        lines.append(f"config key {key}: unknown key{kind} (typo?)")
    return lines


def validate_schema(config: dict) -> dict:
    """A copy of ``config`` with defaults filled; ConfigError naming the key if invalid."""
    schema = load_schema()
    config = copy.deepcopy(config)
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    # Defaults go in on a first pass; a second pass reports errors against the filled config.
    for _ in validator.iter_errors(config):
        pass
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = list(dict.fromkeys(line for error in errors for line in _message(error)))
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines))
    return config
