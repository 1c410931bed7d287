"""What a sweep trains: the networks a config asks for, their canonical names and their specs.

Shared by the Snakefile (targets and params) and the CLI, so both name networks one way.
A network's *spec* holds exactly what determines its training, so its Snakemake params change
only when its own training would: adding a task or a budget never touches an existing network.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from itertools import combinations

from .datasets import loader_config

TASK_SEP = "+"


@dataclass(frozen=True, order=True)
class Network:
    tasks: tuple[str, ...]
    size: str

    @property
    def tasks_key(self) -> str:
        return TASK_SEP.join(self.tasks)

    @property
    def name(self) -> str:
        return f"{self.tasks_key}@{self.size}"


def canonical_tasks(tasks: list[str] | tuple[str, ...], order: list[str]) -> tuple[str, ...]:
    """Tasks in the dataset's order, so {A,B} and {B,A} are one network with one name."""
    position = {t: i for i, t in enumerate(order)}
    return tuple(sorted(tasks, key=position.__getitem__))


def plan_networks(tasks: list[str], sweep: dict) -> list[Network]:
    """The first stage of ``sweep.strategy`` (pipeline/strategies.py): singles at every size,
    full-size sets of every other order it trains, and the all-in-one network where asked or
    needed, without duplicates."""
    from .strategies import first_stage_orders, trains_all_in_one

    nets: list[Network] = []
    for order in first_stage_orders(sweep):
        for combo in combinations(tasks, order):
            sizes = sweep["sizes"] if order == 1 else ["full"]
            nets += [Network(combo, size) for size in sizes]
    if trains_all_in_one(sweep) and len(tasks) > 1:
        nets.append(Network(tuple(tasks), "full"))
    position = {t: i for i, t in enumerate(tasks)}
    return sorted(set(nets), key=lambda n: (len(n.tasks), n.size, [position[t] for t in n.tasks]))


def method_key(architecture: str, weighting: str) -> str:
    return f"{architecture}-{weighting}"


def sweep_methods(config: dict) -> list[tuple[str, str]]:
    """The (architecture, weighting) pairs the sweep trains every network with:
    ``sweep.methods`` if given, else the one pair of ``model.architecture`` and
    ``training.weighting``. Duplicates are dropped, order kept."""
    listed = config.get("sweep", {}).get("methods") or [
        {"architecture": config["model"]["architecture"],
         "weighting": config["training"]["weighting"]}
    ]  # fmt: skip
    pairs = [(m["architecture"], m["weighting"]) for m in listed]
    return list(dict.fromkeys(pairs))


# Method options (config ``training.<method>``) enter a network's spec only when the network
# uses that method, so tuning DWA never retrains an equal-weighted network.
METHOD_OPTION_KEYS = ("dwa", "gradnorm", "adashare")


def network_spec(
    config: dict,
    tasks: tuple[str, ...],
    size: str,
    seed: int,
    architecture: str | None = None,
    weighting: str | None = None,
) -> dict:
    """The complete, JSON-able description of one training (its Snakemake params).
    ``architecture`` / ``weighting`` default to ``model.architecture`` / ``training.weighting``."""
    architecture = architecture or config["model"]["architecture"]
    weighting = weighting or config["training"]["weighting"]
    training = {k: config["training"][k] for k in ("epochs", "batch_size", "lr", "weight_decay")}
    for method in (architecture, weighting):
        options = config["training"].get(method)
        if method in METHOD_OPTION_KEYS and options:
            training[method] = dict(options)
    return {
        "dataset": loader_config(config["dataset"]),
        "split": {"seed": int(config["split"]["seed"]), "fractions": config["split"]["fractions"]},
        "tasks": list(tasks),
        "size": size,
        "seed": int(seed),
        "architecture": architecture,
        "weighting": weighting,
        "model": {
            "hidden": list(config["model"]["hidden"]),
            "head_hidden": list(config["model"]["head_hidden"]),
        },
        "training": training,
    }


def spec_hash(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
