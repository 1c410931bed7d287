"""What a sweep trains: the networks a config asks for, their canonical names and their specs.

Shared by the Snakefile (targets and params) and the CLI, so both name networks one way.
A network's *spec* holds exactly what determines its training, so its Snakemake params change
only when its own training would: adding a task or a budget never touches an existing network.

A network's identity is its task tuple (in dataset order) and size, never a joined string: task
names may contain anything a column name can (``+``, ``/``, spaces, non-ASCII), and there may be
hundreds of them. Two strings are derived from it:

* :attr:`Network.name`, the ``network`` column: the tasks joined by ``+`` (a ``+``, ``@`` or
  ``\\`` inside a task name escaped with ``\\``) and ``@size``. Past :data:`MAX_NAME` characters it
  is shortened to its first tasks, the task count and a hash, so rows stay small.
* :attr:`Network.stem`, the file name: the joined names when they are short and file-safe
  (every network of the released layout keeps its file), else a slug of the first task names,
  the task count and a hash of the task tuple.

The full task list of every network is in its Parquet (``tasks`` column) and in
``results/networks.parquet`` (stem -> tasks), never parsed back out of a name.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from .datasets import network_dataset

TASK_SEP = "+"
# Names built only of these characters were the only ones allowed before; their networks keep
# the released file names (``A+B.parquet``) so existing results are found, not retrained.
LEGACY_TASK_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
# Short enough for every file system (255 bytes) with the .parquet / temp-file affixes added.
MAX_STEM = 120
MAX_NAME = 200
HASH_CHARS = 12


def task_set_hash(tasks: tuple[str, ...] | list[str]) -> str:
    """sha256 of the canonical task tuple (JSON, so no separator can be ambiguous)."""
    return hashlib.sha256(json.dumps(list(tasks), ensure_ascii=False).encode()).hexdigest()


def _escape(task: str) -> str:
    return task.replace("\\", "\\\\").replace(TASK_SEP, "\\" + TASK_SEP).replace("@", "\\@")


def join_tasks(tasks: Iterable[str]) -> str:
    """Task names joined by "+", each "+", "@" or "\\" in a name escaped: one string per task
    list, never two (a name may itself contain "+")."""
    return TASK_SEP.join(_escape(t) for t in tasks)


def _slug(task: str) -> str:
    ascii_only = unicodedata.normalize("NFKD", task).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9]+", "_", ascii_only).strip("_")


@dataclass(frozen=True, order=True)
class Network:
    tasks: tuple[str, ...]
    size: str

    @property
    def key(self) -> str:
        """The unbounded canonical string: escaped tasks joined by ``+``, then ``@size``.
        Injective (escaping), and equal to the released name for every released network."""
        return f"{join_tasks(self.tasks)}@{self.size}"

    @property
    def name(self) -> str:
        """The ``network`` column: :attr:`key`, or past MAX_NAME characters its first tasks,
        the count and the task-set hash (a 617-task key would repeat ~20 kB on every row).
        training.network_seed derives each network's initialisation from it: equal to the
        released name for every released network, so their seeds are unchanged."""
        key = self.key
        if len(key) <= MAX_NAME:
            return key
        head = ""
        for t in self.tasks:
            part = _escape(t)
            if len(head) + len(part) + 1 > MAX_NAME // 2:
                break
            head += part + TASK_SEP
        digest = task_set_hash(self.tasks)[:HASH_CHARS]
        return f"{head}…[{len(self.tasks)} tasks #{digest}]@{self.size}"

    @property
    def stem(self) -> str:
        """The file stem (the size is the parent folder, so it is not repeated here)."""
        legacy = TASK_SEP.join(self.tasks)
        if len(legacy) <= MAX_STEM and all(LEGACY_TASK_NAME.fullmatch(t) for t in self.tasks):
            return legacy
        # "~" never occurs in a legacy stem, so the two layouts cannot collide.
        slug = "_".join(s for s in map(_slug, self.tasks[:3]) if s)[:60].strip("_") or "tasks"
        return f"{slug}~{len(self.tasks)}t~{task_set_hash(self.tasks)[:HASH_CHARS]}"


def canonical_tasks(tasks: list[str] | tuple[str, ...], order: list[str]) -> tuple[str, ...]:
    """Tasks in the dataset's order, so {A,B} and {B,A} are one network with one name."""
    position = {t: i for i, t in enumerate(order)}
    return tuple(sorted(tasks, key=position.__getitem__))


def count_networks(n_tasks: int, sweep: dict) -> int:
    """How many networks :func:`plan_networks` returns, without building them."""
    from .strategies import build_strategy

    return build_strategy(sweep, n_tasks).count_first_stage(n_tasks)


def plan_networks(tasks: list[str], sweep: dict) -> list[Network]:
    """The first stage of the sweep's strategy (pipeline/strategies/): the networks trained
    before any estimate."""
    from .strategies import build_strategy

    return build_strategy(sweep, tasks).first_stage(tasks)


# "Training method" (also: mtl method): an architecture x loss-weighting pair, the folder
# runs/<architecture>-<weighting>/ and the columns ``architecture`` / ``weighting``. Not a
# selection method (optimal, hoa, all_in_one, ...: how the grouping solve picks networks).
def method_key(architecture: str, weighting: str) -> str:
    """The training method's key: ``<architecture>-<weighting>``."""
    return f"{architecture}-{weighting}"


def sweep_methods(config: dict) -> list[tuple[str, str]]:
    """The training methods, (architecture, weighting) pairs, the sweep trains every network with:
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
    ``architecture`` / ``weighting`` default to ``model.architecture`` / ``training.weighting``.
    The dataset part is :func:`pipeline.datasets.network_dataset`: for a table, only this
    network's target columns (and their content hashes), so adding a task or editing another
    task's labels leaves this spec unchanged."""
    architecture = architecture or config["model"]["architecture"]
    weighting = weighting or config["training"]["weighting"]
    training = {k: config["training"][k] for k in ("epochs", "batch_size", "lr", "weight_decay")}
    for method in (architecture, weighting):
        options = config["training"].get(method)
        if method in METHOD_OPTION_KEYS and options:
            training[method] = dict(options)
    model = {
        "hidden": list(config["model"]["hidden"]),
        "head_hidden": list(config["model"]["head_hidden"]),
    }
    trunk = config["model"].get("trunk", "mlp")
    if trunk != "mlp":
        # Only then: the specs (and results) of MLP networks predate the key.
        model["trunk"] = trunk
        if trunk != "conv":  # your own: its source is part of the training
            from .models.user import trunk_source_hash

            model["trunk_source"] = trunk_source_hash(trunk)
    return {
        "dataset": network_dataset(config["dataset"], tasks),
        "split": {"seed": int(config["split"]["seed"]), "fractions": config["split"]["fractions"]},
        "tasks": list(tasks),
        "size": size,
        "seed": int(seed),
        "architecture": architecture,
        "weighting": weighting,
        "model": model,
        "training": training,
    }


def spec_hash(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
