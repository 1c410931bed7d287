"""``taskgroup leftovers``: network result files under ``results_dir`` that the current config
no longer produces (a task, seed, size or training method dropped from the config), with the
logs, benchmarks and checkpoints of those networks. Read-only unless asked to delete."""

from __future__ import annotations

import os
from pathlib import Path

from .strategies import estimates, read_decided_groups
from .strategies.controls import read_controls
from .sweep import method_key, plan_networks, sweep_methods

# Per-network folders under results_dir, and the suffix of each one's files.
PER_NETWORK = {"runs": ".parquet", "logs/train": ".log", "benchmarks/train": ".tsv",
               "checkpoints": ".pt"}  # fmt: skip


def expected_network_paths(config: dict) -> set[str]:
    """``<architecture>-<weighting>/seed<s>/<size>/<stem>`` of every network the config trains
    (first stage; an estimating strategy's decided groups where they were decided)."""

    results = Path(config["results_dir"])
    nets = plan_networks(config["dataset"]["tasks"], config["sweep"])
    expected = set()
    for architecture, weighting in sweep_methods(config):
        method = method_key(architecture, weighting)
        decided = []
        groups = results / "groups" / f"{method}.json"
        if estimates(config["sweep"]) and groups.exists():
            decided = [*read_decided_groups(groups), *read_controls(groups)]
        for seed in config["sweep"]["seeds"]:
            for net in [*nets, *decided]:
                expected.add(f"{method}/seed{seed}/{net.size}/{net.stem}")
    return expected


def find_leftovers(config: dict) -> list[Path]:
    results = Path(config["results_dir"])
    expected = expected_network_paths(config)
    found = []
    for folder, suffix in PER_NETWORK.items():
        root = results / folder
        if not root.is_dir():
            continue
        for path in sorted(root.rglob(f"*{suffix}")):
            key = str(path.relative_to(root))[: -len(suffix)]
            if key not in expected:
                found.append(path)
    return found


def delete(config: dict, paths: list[Path]) -> None:
    """Delete ``paths`` and the per-network folders they leave empty (a dropped seed or
    training method), never the folders of PER_NETWORK themselves."""
    results = Path(config["results_dir"])
    roots = {(results / folder).resolve() for folder in PER_NETWORK}
    for path in paths:
        path.unlink(missing_ok=True)
        parent = path.parent.resolve()
        while parent not in roots and parent != parent.parent and not any(parent.iterdir()):
            os.rmdir(parent)
            parent = parent.parent
