"""``taskgroup export``: a chosen grouping as a file a deployment can read, and (optionally)
the chosen networks' weights.

The grouping comes from ``results/groupings.parquet`` (one row per task at each budget and
selection method) and ``results/networks.parquet`` (network -> files, task list, seed). Weights
are not kept by the sweep (311 Tox21 networks would be ~190 MB for the few a budget deploys);
``--weights DIR`` retrains exactly the chosen networks from their recorded specs instead:
training is deterministic per spec and seed, and the export checks that the retrained
network's final losses equal the recorded ones before saving its ``state_dict``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from .io import atomic_write
from .sweep import Network, method_key, network_spec, spec_differences, spec_hash

# groupings.parquet's selection-method column: "selection_method" from this release on,
# "method" before (both are read).
SELECTION_COLUMNS = ("selection_method", "method")


class ExportError(ValueError):
    """The grouping asked for is not in the results (the message lists what is)."""


def _selection_column(frame: pd.DataFrame) -> str:
    for column in SELECTION_COLUMNS:
        if column in frame.columns:
            return column
    raise ExportError("groupings.parquet has no selection-method column")


def read_grouping(
    results: str | os.PathLike,
    budget: float,
    selection_method: str = "optimal",
    training_method: str | None = None,
) -> dict:
    """The grouping chosen at ``budget`` by ``selection_method`` for one training method
    (``<architecture>-<weighting>``; needed only when the results hold several)."""
    results = Path(results)
    groupings_path, networks_path = results / "groupings.parquet", results / "networks.parquet"
    for path in (groupings_path, networks_path):
        if not path.exists():
            raise ExportError(f"{path} does not exist; run the workflow (snakemake) first")
    frame = pd.read_parquet(groupings_path)
    column = _selection_column(frame)
    frame["training_method"] = [
        method_key(a, w) for a, w in zip(frame["architecture"], frame["weighting"])
    ]
    known = sorted(frame["training_method"].unique())
    if training_method is None:
        if len(known) > 1:
            raise ExportError(
                f"several training methods {known}: choose one with --training-method"
            )
        training_method = known[0]
    if training_method not in known:
        raise ExportError(f"training method {training_method!r} not in the results; known: {known}")
    frame = frame[frame["training_method"] == training_method]
    selections = sorted(frame[column].unique())
    if selection_method not in selections:
        raise ExportError(f"selection method {selection_method!r} unknown; known: {selections}")
    frame = frame[frame[column] == selection_method]
    budgets = sorted(frame["budget"].unique())
    match = [b for b in budgets if math.isclose(b, budget, rel_tol=1e-9, abs_tol=1e-12)]
    if not match:
        raise ExportError(
            f"no budget {budget:g} in the results; budgets: {[float(b) for b in budgets]}"
        )
    rows = frame[frame["budget"] == match[0]]
    status = rows["status"].iloc[0]
    if status != "ok":
        raise ExportError(
            f"{selection_method} at budget {budget:g} is {status}: {rows['note'].iloc[0] or ''}"
        )
    if rows["networks"].iloc[0] is None or "network" not in rows or rows["network"].isna().all():
        raise ExportError(
            f"{selection_method} is a baseline without one chosen set (e.g. random: a mean "
            "over many draws); export optimal, esa, hoa, all_in_one or independent"
        )
    architecture, weighting = training_method.split("-", 1)
    manifest = pd.read_parquet(networks_path)
    manifest = manifest[
        (manifest["architecture"] == architecture) & (manifest["weighting"] == weighting)
    ]
    serves: dict[str, list[str]] = {}
    for task, network in zip(rows["task"], rows["network"]):
        serves.setdefault(network, []).append(task)
    networks = []
    for name in rows["networks"].iloc[0]:
        entries = manifest[manifest["network"] == name]
        if entries.empty:
            raise ExportError(f"network {name!r} is chosen but not in {networks_path}")
        first = entries.iloc[0]
        networks.append({
            "network": name,
            "tasks": list(first["tasks"]),
            "size": str(first["size"]),
            "serves": serves.get(name, []),
            "files": {int(s): str(f) for s, f in zip(entries["seed"], entries["file"])},
        })  # fmt: skip
    first = rows.iloc[0]
    return {
        "budget": float(match[0]),
        "selection_method": selection_method,
        "training_method": {"architecture": architecture, "weighting": weighting},
        "objective": str(first["objective"]),
        "epoch": str(first["epoch"]),
        "cost": None if pd.isna(first["cost"]) else float(first["cost"]),
        "val_total": None if pd.isna(first["val_total"]) else float(first["val_total"]),
        "test_total": None if pd.isna(first["test_total"]) else float(first["test_total"]),
        "networks": networks,
        "task_network": dict(zip(rows["task"], rows["network"])),
    }


def write_grouping(grouping: dict, out: str | os.PathLike) -> None:
    """YAML unless ``out`` ends in .json; written atomically."""
    import yaml

    out = Path(out)
    with atomic_write(out) as tmp:
        with open(tmp, "w") as fh:
            if out.suffix.lower() == ".json":
                json.dump(grouping, fh, indent=2, ensure_ascii=False)
                fh.write("\n")
            else:
                yaml.safe_dump(grouping, fh, sort_keys=False, allow_unicode=True)


def _what_differs(entry: dict, seed: int, spec: dict) -> str:
    """The spec keys that changed since the network's run file was written (its recorded
    spec), e.g. ``model.trunk_source`` when a trunk's code was edited; ``config_hash`` for a
    file written before specs were recorded."""
    from .schema import recorded_spec

    path = Path(entry["files"][seed])
    try:
        recorded = recorded_spec(path) if path.exists() else None
    except OSError:
        recorded = None
    keys = spec_differences(recorded, spec) if recorded is not None else []
    if not keys:
        return "config_hash"
    what = ", ".join(keys)
    if "model.trunk_source" in keys:
        what += f": the code of model.trunk {spec['model']['trunk']!r} changed"
    return what


def _recorded(results: Path, network: str, architecture: str, weighting: str, seed: int):
    """(config_hash, {task: final val loss}) of a network as collected in metrics.parquet."""
    filters = [
        ("network", "=", network), ("architecture", "=", architecture),
        ("weighting", "=", weighting), ("seed", "=", seed),
    ]  # fmt: skip
    table = pq.read_table(
        results / "metrics.parquet",
        columns=["config_hash", "task", "split", "epoch", "epochs", "metric", "value", "status"],
        filters=filters,
    ).to_pandas()
    if table.empty:
        raise ExportError(f"{network} (seed {seed}) is not in {results / 'metrics.parquet'}")
    final = table[(table["split"] == "val") & (table["metric"] == "loss")]
    final = final[final["epoch"] == final["epoch"].max()]
    return table["config_hash"].iloc[0], dict(zip(final["task"], final["value"])), table


def export_weights(
    config: dict,
    grouping: dict,
    results: str | os.PathLike,
    out_dir: str | os.PathLike,
    log=print,
) -> list[Path]:
    """Retrain each chosen network (every seed it was trained with) from its spec and save
    its final weights to ``out_dir/<architecture>-<weighting>/seed<s>/<size>/<stem>.pt``.

    Refused when ``config`` no longer gives the recorded spec (its ``config_hash``): the
    weights would not be those of the selected network. A retrained network whose final
    validation losses differ from the recorded ones (another device or torch version) is
    reported and not saved."""
    import torch

    from .datasets import load_dataset
    from .split import make_split
    from .training import Trainer, resolve_device

    results, out_dir = Path(results), Path(out_dir)
    # A multiclass output's index i is class_labels[task][i] where labels were mapped.
    mapped = load_dataset(config["dataset"]).class_labels
    served = {t for entry in grouping["networks"] for t in entry["tasks"]}
    if any(t in mapped for t in served):
        grouping["class_labels"] = {t: list(mapped[t]) for t in mapped if t in served}
    architecture = grouping["training_method"]["architecture"]
    weighting = grouping["training_method"]["weighting"]
    written = []
    for entry in grouping["networks"]:
        network = Network(tuple(entry["tasks"]), entry["size"])
        for seed in sorted(entry["files"]):
            spec = network_spec(config, network.tasks, network.size, seed, architecture, weighting)
            recorded_hash, recorded_loss, _ = _recorded(
                results, entry["network"], architecture, weighting, seed
            )
            if spec_hash(spec) != recorded_hash:
                raise ExportError(
                    f"{entry['network']} (seed {seed}): the config's training spec differs from "
                    f"the one these results were trained with ({_what_differs(entry, seed, spec)}"
                    "); export with the config (and trunk code) that produced them, or rerun "
                    "snakemake to retrain"
                )
            data = load_dataset(spec["dataset"])
            labels = make_split(data.n_rows, spec["split"]["fractions"], spec["split"]["seed"])
            capture = _FinalWeights()
            trainer = Trainer(data, labels, spec, resolve_device(), checkpoint=capture)
            table = trainer.fit().to_pandas()
            final = table[(table["split"] == "val") & (table["metric"] == "loss")]
            final = final[final["epoch"] == final["epoch"].max()]
            diff = max(
                abs(float(v) - float(recorded_loss.get(t, float("nan"))))
                for t, v in zip(final["task"], final["value"])
            )
            if capture.state is None or not diff <= 1e-5:
                log(
                    f"not saved: {entry['network']} (seed {seed}) retrained to other final "
                    f"losses than recorded (max |diff| {diff:.2g}); same device and torch?"
                )
                continue
            path = out_dir / method_key(architecture, weighting) / f"seed{seed}" / network.size
            path = path / f"{network.stem}.pt"
            with atomic_write(path) as tmp:
                torch.save(capture.state, tmp)
            entry.setdefault("weights", {})[seed] = str(path)
            written.append(path)
            log(f"saved {path} ({path.stat().st_size / 1e6:.2f} MB; losses as recorded)")
    return written


class _FinalWeights:
    """A Checkpointer stand-in that keeps the model's state after the last epoch in memory
    (the Trainer asks it after every epoch; saving reads state, so training is unchanged)."""

    path = "memory"

    def __init__(self) -> None:
        self.state = None

    def load(self, config_hash: str):
        return None

    def due(self, final: bool) -> bool:
        return final

    def save(self, state: dict) -> None:
        self.state = {k: v.detach().cpu().clone() for k, v in state["model"].items()}

    def remove(self) -> None:
        pass
