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


def _retrain(
    config: dict, entry: dict, seed: int, architecture: str, weighting: str, results: Path, log
):
    """Retrain one chosen network (one seed) from its recorded spec: (trainer, final weights,
    recorded metrics) when it reproduces the recorded final validation losses, else None
    (logged). Refused (ExportError) when ``config`` no longer gives the recorded spec."""
    from .datasets import load_dataset
    from .split import make_split
    from .training import Trainer, resolve_device

    network = Network(tuple(entry["tasks"]), entry["size"])
    spec = network_spec(config, network.tasks, network.size, seed, architecture, weighting)
    recorded_hash, recorded_loss, recorded = _recorded(
        results, entry["network"], architecture, weighting, seed
    )
    if spec_hash(spec) != recorded_hash:
        raise ExportError(
            f"{entry['network']} (seed {seed}): the config's training spec differs from "
            f"the one these results were trained with ({_what_differs(entry, seed, spec)}); "
            "export with the config (and trunk code) that produced them, or rerun snakemake "
            "to retrain"
        )
    data = load_dataset(spec["dataset"])
    labels = make_split(data.n_rows, spec["split"]["fractions"], spec["split"]["seed"])
    trainer = Trainer(data, labels, spec, resolve_device())
    table, state = _fit_in_fresh_process(spec)
    final = table[(table["split"] == "val") & (table["metric"] == "loss")]
    final = final[final["epoch"] == final["epoch"].max()]
    diff = max(
        abs(float(v) - float(recorded_loss.get(t, float("nan"))))
        for t, v in zip(final["task"], final["value"])
    )
    if state is None or not diff <= 1e-5:
        log(
            f"not saved: {entry['network']} (seed {seed}) retrained to other final "
            f"losses than recorded (max |diff| {diff:.2g}); same device and torch?"
        )
        return None
    return trainer, state, recorded


def _fit_in_fresh_process(spec: dict):
    """(metrics table, final weights) of ``spec``'s training, run as the train rule runs it: in
    a new process on one thread. A long-lived process need not retrain bitwise the same: a CPU
    kernel's result can depend on how many threads split it and on what ran before in that
    process (oneDNN caches the convolution primitives it built for other thread counts), and
    Adam turns a last-bit difference into a visible one within an epoch (seen in CI: 0.016 on an
    image network's validation loss, retrained in the test process after hundreds of tests)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        table, weights = pool.submit(_fit_spec, spec).result()
    if weights is None:
        return table, None
    import io

    import torch

    return table, torch.load(io.BytesIO(weights), weights_only=True)


def _fit_spec(spec: dict):
    """The child's side of :func:`_fit_in_fresh_process` (module level: spawn pickles it by
    name). Weights travel as torch.save bytes, not as tensors shared through file descriptors."""
    import io

    import torch

    torch.set_num_threads(1)
    from .datasets import load_dataset
    from .split import make_split
    from .training import Trainer, resolve_device

    data = load_dataset(spec["dataset"])
    labels = make_split(data.n_rows, spec["split"]["fractions"], spec["split"]["seed"])
    capture = _FinalWeights()
    table = Trainer(data, labels, spec, resolve_device(), checkpoint=capture).fit().to_pandas()
    if capture.state is None:
        return table, None
    buffer = io.BytesIO()
    torch.save(capture.state, buffer)
    return table, buffer.getvalue()


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
            retrained = _retrain(config, entry, seed, architecture, weighting, results, log)
            if retrained is None:
                continue
            state = retrained[1]
            path = out_dir / method_key(architecture, weighting) / f"seed{seed}" / network.size
            path = path / f"{network.stem}.pt"
            with atomic_write(path) as tmp:
                torch.save(state, tmp)
            entry.setdefault("weights", {})[seed] = str(path)
            written.append(path)
            log(f"saved {path} ({path.stat().st_size / 1e6:.2f} MB; losses as recorded)")
    return written


def is_answer_folder(out: str | os.PathLike) -> bool:
    """``--out`` names a folder (an answer to load and run) unless it ends in .yaml/.yml/.json
    (the grouping file alone, as before)."""
    return Path(out).suffix.lower() not in (".yaml", ".yml", ".json")


def export_answer(
    config: dict,
    grouping: dict,
    results: str | os.PathLike,
    out_dir: str | os.PathLike,
    seed: int | None = None,
    log=print,
) -> Path:
    """Write ``out_dir/answer.yaml`` (task -> network) and one self-contained folder per chosen
    network (``networks/<size>/<stem>/``: network.json, weights.pt, spec.json) that
    :func:`pipeline.predict.load_network` loads.

    Each network is retrained from its recorded spec (``seed``: the lowest seed it was trained
    with unless given) and kept only if it reproduces the recorded final validation losses;
    before anything is written, the saved folder's own preprocessing and model must reproduce
    the recorded test losses (rtol 1e-5). The folder appears whole or not at all (built beside
    ``out_dir``, then renamed over it); an existing ``out_dir`` is replaced only if it holds a
    previous export."""
    import shutil
    import tempfile

    from .predict import ANSWER_FILE, ANSWER_FORMAT

    results, out_dir = Path(results), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / ANSWER_FILE).exists():
        raise ExportError(f"--out {out_dir} exists and is not a previous export; not overwritten")
    architecture = grouping["training_method"]["architecture"]
    weighting = grouping["training_method"]["weighting"]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        networks = {}
        for entry in grouping["networks"]:
            seeds = sorted(entry["files"])
            chosen = seeds[0] if seed is None else seed
            if chosen not in seeds:
                raise ExportError(f"{entry['network']} was not trained with seed {chosen}: {seeds}")
            retrained = _retrain(config, entry, chosen, architecture, weighting, results, log)
            if retrained is None:
                raise ExportError(
                    f"{entry['network']} (seed {chosen}) did not retrain to its recorded losses; "
                    "nothing written"
                )
            network = Network(tuple(entry["tasks"]), entry["size"])
            relative = Path("networks") / network.size / network.stem
            _write_network(staging / relative, entry["network"], *retrained)
            networks[entry["network"]] = {
                "path": relative.as_posix(), "tasks": list(entry["tasks"]),
                "serves": list(entry["serves"]), "seed": int(chosen),
            }  # fmt: skip
            log(f"saved {out_dir / relative} (test losses as recorded)")
        answer = {
            "format": ANSWER_FORMAT,
            **{k: grouping[k] for k in ("budget", "selection_method", "training_method")},
            **{k: grouping[k] for k in ("objective", "epoch", "cost", "val_total", "test_total")},
            "task_network": dict(grouping["task_network"]),
            "networks": networks,
        }
        write_grouping(answer, staging / ANSWER_FILE)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out_dir


def _write_network(folder: Path, name: str, trainer, state: dict, recorded) -> None:
    """One network's folder; checked by loading it back and reproducing the test losses."""
    import numpy as np
    import torch

    from . import predict
    from .metrics import masked_loss
    from .training import package_versions

    data, spec, inputs = trainer.data, trainer.spec, trainer.inputs
    train = trainer.labels == "train"
    sparse, mean, std = _input_preprocessing(data, train, inputs.x, name)
    tasks = []
    for j, task in enumerate(trainer.tasks):
        kind = trainer.types[j]
        column = data.task_index(task)
        entry = {"name": task, "type": kind, "output_dim": int(trainer.output_dims[j]),
                 "classes": int(data.n_classes[column])}  # fmt: skip
        if task in data.class_labels:
            entry["class_labels"] = list(data.class_labels[task])
        if kind in ("regression", "dense_regression"):
            values = (
                data.targets[:, column] if kind == "regression" else data.dense_targets[task]
            ).astype(np.float32)[train]
            # As pipeline.training._prepare standardises targets (checked below for regression).
            entry["target_scale"] = {
                "mean": float(np.nanmean(values)), "std": float(np.nanstd(values) or 1.0)
            }  # fmt: skip
        tasks.append(entry)
    shape = trainer.shape
    model_shape = {f: getattr(shape, f) for f in shape.__dataclass_fields__}
    trunk = None
    if "trunk_source" in spec["model"]:
        trunk = {"factory": spec["model"]["trunk"], "source_hash": spec["model"]["trunk_source"]}
    final = recorded[
        (recorded["metric"] == "loss") & (recorded["epoch"] == recorded["epoch"].max())
    ]
    meta = {
        "format": predict.NETWORK_FORMAT,
        "network": name,
        "tasks": tasks,
        "input": {
            "kind": "images" if data.features.ndim == 4 else "table",
            "shape": list(data.features.shape[1:]),
            "feature_names": list(data.feature_columns) or None,
            "feature_indices": None
            if data.feature_indices is None
            else [int(i) for i in data.feature_indices],
            "source_width": None
            if data.feature_indices is None
            else len(data.feature_indices) + len(data.dropped_features),
            "array": spec["dataset"].get("inputs", "x"),
            "sparse_binary": sparse,
            "mean": mean,
            "std": std,
        },
        # pipeline.models.build_model's arguments, as Trainer.build_model passed them.
        "model": {
            "architecture": spec["architecture"],
            "shape": json.loads(json.dumps(model_shape)),
            "widths": list(trainer.widths),
            "output_dims": list(trainer.output_dims),
            "dense": list(trainer.dense),
            "width": _size_fraction(spec["size"]),
        },
        "trunk": trunk,
        "recorded": {
            "seed": int(spec["seed"]),
            "config_hash": trainer.config_hash,
            "epoch": int(final["epoch"].max()),
            "loss": {
                s: dict(zip(g["task"], map(float, g["value"]))) for s, g in final.groupby("split")
            },
        },  # fmt: skip
        "versions": json.loads(package_versions()),
    }
    folder.mkdir(parents=True)
    (folder / predict.NETWORK_FILE).write_text(
        json.dumps(meta, indent=1, ensure_ascii=False) + "\n"
    )
    (folder / predict.SPEC_FILE).write_text(json.dumps(spec, indent=1, ensure_ascii=False) + "\n")
    torch.save(state, folder / predict.WEIGHTS_FILE)

    # The check: the folder alone (its preprocessing, rebuilt model and weights) gives the
    # recorded test losses from the test rows' raw inputs.
    loaded = predict.load_network(folder)
    rows = np.flatnonzero(trainer.labels == "test")
    outputs = loaded.outputs(data.features[rows])
    y = inputs.y.cpu().numpy()
    for j, task in enumerate(trainer.tasks):
        scale = tasks[j].get("target_scale")
        if tasks[j]["type"] == "regression":
            # The recorded scale restores exactly the targets training standardised.
            column = data.targets[:, data.task_index(task)].astype(np.float32)
            restored = (column - np.float32(scale["mean"])) / np.float32(scale["std"])
            if not np.array_equal(restored, y[:, j], equal_nan=True):
                raise ExportError(f"{name}: target scaling of {task!r} differs from training's")
        if trainer.dense[j]:
            # Dense tasks' losses are accumulated per pixel chunk in training; not rechecked.
            continue
        loss = float(masked_loss(outputs[j], torch.from_numpy(y[rows, j]), tasks[j]["type"]))
        want = meta["recorded"]["loss"]["test"][task]
        if not np.isclose(loss, want, rtol=1e-5, atol=1e-7, equal_nan=True):
            raise ExportError(
                f"{name}: the exported network gives test loss {loss:.7g} for {task!r}, "
                f"not the recorded {want:.7g}; not exported"
            )


def _input_preprocessing(data, train, x, name: str) -> tuple[bool, list | None, list | None]:
    """(sparse 0/1 input, mean, std): how ``data.features`` became the training's input ``x``,
    proven bit for bit: the sparse first layer's batch, the train split's standardisation
    (pipeline.predict.standardise), or the features as they are."""
    import torch

    from .models.layers import SparseMatrix
    from .predict import standardise

    if isinstance(x, SparseMatrix):
        return True, None, None
    x = x.cpu()
    raw = torch.from_numpy(data.features)
    axes = (0, 2, 3) if data.features.ndim == 4 else 0
    mean, std = data.features[train].mean(axis=axes), data.features[train].std(axis=axes)
    if torch.equal(standardise(raw, torch.from_numpy(mean), torch.from_numpy(std)), x):
        return False, mean.tolist(), std.tolist()
    if torch.equal(raw, x):
        return False, None, None
    raise ExportError(
        f"{name}: the training's input is neither the features standardised on the train split "
        "nor the features as they are; cannot record its preprocessing"
    )


def _size_fraction(size: str) -> float:
    from .models import SIZE_FRACTIONS

    return float(SIZE_FRACTIONS[size])


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
