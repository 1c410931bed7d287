"""The config schema file (``schemas/config.schema.yaml``) as data: the one place where every
default is written, method options included (the method classes read theirs from here)."""

from __future__ import annotations

import copy
import functools
from importlib import resources
from pathlib import Path

import yaml


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
