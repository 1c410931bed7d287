"""Load an exported network and predict with it (``taskgroup predict``, ``pipeline.load_network``).

Chemprop's convention: train -> a model file that carries everything prediction needs -> predict
on new inputs. ``taskgroup export --out DIR`` (pipeline/export.py) writes ``DIR/answer.yaml``
(task -> network) and one folder per chosen network (:data:`NETWORK_FILE`, :data:`WEIGHTS_FILE`,
:data:`SPEC_FILE`); this module reads them back. The model is rebuilt with
:func:`pipeline.models.build_model` from the arguments the training's Trainer passed it, so
prediction never re-derives a shape of its own.

Inputs are shaped like the training input: a table's feature columns by name (CSV or Parquet;
extra columns are ignored), or an array (rows, features) / (rows, channels, H, W) in a ``.npz``.
They get the training split's standardisation recorded at export (binary 0/1 features are used
as they are, through the sparse first layer, as in training).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

NETWORK_FORMAT = "taskgroup-network/1"
ANSWER_FORMAT = "taskgroup-answer/1"
ANSWER_FILE = "answer.yaml"
NETWORK_FILE = "network.json"
WEIGHTS_FILE = "weights.pt"
SPEC_FILE = "spec.json"
# Rows per forward pass (tables); images: about this many input values per pass.
CHUNK_ROWS = 8192
CHUNK_VALUES = 1 << 20
DENSE = ("segmentation", "dense_regression", "normals")


class PredictError(ValueError):
    """The input or the exported folder cannot be used; the message names the file, column or
    shape."""


def _as_shape(values) -> tuple:
    return tuple(int(v) for v in values)


def standardise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Training's input standardisation: per feature (rows, features) or per channel (rows,
    channels, H, W); a constant input (std 0) is only centred. The export proves it gives
    the training's input bit for bit before it records ``mean`` and ``std``."""
    if x.ndim == 4:
        mean, std = mean[:, None, None], std[:, None, None]
    return ((x - mean) / torch.where(std == 0, 1.0, std)).float()


class NetworkPredictor(nn.Module):
    """An exported network: ``forward`` is the trained model's (standardised inputs -> one raw
    output per task); :meth:`predict` takes inputs shaped like the training input and returns
    each task's predictions in the target's own terms."""

    def __init__(self, model: nn.Module, meta: dict) -> None:
        super().__init__()
        self.model = model
        self.meta = meta
        self.tasks = [t["name"] for t in meta["tasks"]]
        spec = meta["input"]
        self.sparse_binary = bool(spec["sparse_binary"])
        self.input_shape = _as_shape(spec["shape"])
        self.feature_names = list(spec.get("feature_names") or [])
        # Constant columns dropped at training (dataset.constant_features): positions kept out
        # of the source's ``source_width`` columns; None: all of them.
        indices = spec.get("feature_indices")
        self.feature_indices = None if indices is None else [int(i) for i in indices]
        self.source_width = spec.get("source_width")
        for name in ("mean", "std"):
            value = spec.get(name)
            tensor = torch.tensor(value, dtype=torch.float32) if value is not None else None
            self.register_buffer(f"input_{name}", tensor, persistent=False)

    def forward(self, x):
        return self.model(x)

    # ---- inputs ---------------------------------------------------------------------------
    def input_array(self, inputs) -> np.ndarray:
        """``inputs`` (numpy array, pandas DataFrame, pyarrow Table or dict of columns) as the
        float32 array (rows, *input_shape) the network was trained on, checked."""
        if isinstance(inputs, np.ndarray):
            array = inputs
        elif (
            hasattr(inputs, "column_names")
            or hasattr(inputs, "columns")
            or isinstance(inputs, dict)
        ):
            array = self._from_columns(inputs)
        else:
            array = np.asarray(inputs)
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise PredictError(f"input: values of type {array.dtype}, not numbers")
        if array.ndim == len(self.input_shape):  # one sample
            array = array[None]
        if (
            self.feature_indices is not None
            and array.ndim == 2
            and array.shape[1] == self.source_width
        ):
            array = array[:, self.feature_indices]  # the source's columns: drop as training did
        if tuple(array.shape[1:]) != self.input_shape:
            also = (
                f" (or the source's {self.source_width} columns)"
                if self.feature_indices is not None
                else ""
            )
            raise PredictError(
                f"input: shape {tuple(array.shape)}, but the network takes "
                f"(rows, {', '.join(map(str, self.input_shape))}){also}"
            )
        array = array.astype(np.float32)
        finite = np.isfinite(array)
        if not finite.all():
            rows = np.flatnonzero(~finite.reshape(len(array), -1).all(axis=1))
            where = f"row(s) {rows[:5].tolist()}"
            if array.ndim == 2:
                names = self.feature_names or [f"#{i}" for i in range(array.shape[1])]
                columns = np.flatnonzero(~finite.all(axis=0))
                where += f", feature column(s) {[names[c] for c in columns[:5]]}"
            raise PredictError(f"input: NaN or inf values in {where}")
        if self.sparse_binary and not np.isin(array, (0.0, 1.0)).all():
            raise PredictError(
                "input: values other than 0/1; the network was trained on binary features"
            )
        return array

    def _from_columns(self, table) -> np.ndarray:
        names = list(table.column_names if hasattr(table, "column_names") else table.keys())
        if len(self.input_shape) != 1:
            raise PredictError(
                f"input: a table, but the network takes images {self.input_shape}; give a .npz"
            )
        wanted = self.feature_names
        if not wanted:
            # The training data did not name its features: every column, in order.
            widths = {self.input_shape[0], self.source_width or self.input_shape[0]}
            if len(names) not in widths:
                raise PredictError(
                    f"input: {len(names)} columns, but the network takes {self.input_shape[0]} "
                    "unnamed features (all columns, in order)"
                )
            wanted = names
        missing = [c for c in wanted if c not in names]
        if missing:
            shown = ", ".join(map(repr, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise PredictError(
                f"input: feature column(s) {shown} missing ({len(missing)} of the "
                f"{len(wanted)} the network reads by name)"
            )
        columns = []
        for name in wanted:
            column = table[name]
            column = column.to_numpy() if hasattr(column, "to_numpy") else np.asarray(column)
            if not (np.issubdtype(column.dtype, np.number) or column.dtype == bool):
                raise PredictError(f"input: feature column {name!r} is not numeric")
            columns.append(column.astype(np.float64))
        return np.stack(columns, axis=1)

    def model_inputs(self, array: np.ndarray) -> list:
        """The checked array as the model's input, chunked: standardised as in training (a
        binary table: the sparse batch training fed the first layer)."""
        from .models.layers import SparseMatrix

        x = torch.from_numpy(array)
        per_row = max(1, int(np.prod(self.input_shape)))
        chunk = CHUNK_ROWS if len(self.input_shape) == 1 else max(1, CHUNK_VALUES // per_row)
        rows = torch.arange(x.shape[0])
        if self.sparse_binary:
            matrix = SparseMatrix(x)
            return [matrix.take(rows[i : i + chunk]) for i in range(0, x.shape[0], chunk)]
        if self.input_mean is not None:
            x = standardise(x, self.input_mean, self.input_std)
        return [x[i : i + chunk] for i in range(0, x.shape[0], chunk)]

    @torch.no_grad()
    def outputs(self, inputs) -> list[torch.Tensor]:
        """The model's raw outputs (logits; regression in standardised units), one per task."""
        self.eval()
        chunks = [self.model(batch) for batch in self.model_inputs(self.input_array(inputs))]
        return [torch.cat([c[j] for c in chunks]) for j in range(len(self.tasks))]

    # ---- predictions ----------------------------------------------------------------------
    def predict(self, inputs) -> dict[str, np.ndarray]:
        """task -> predictions for each input row: binary (rows,) probability; regression
        (rows,) value in the target's units; multiclass (rows, classes) probabilities (the
        class id is the argmax; ``meta['tasks'][j]['class_labels']`` names them where the
        labels were mapped); dense_regression (rows, H, W) values, segmentation (rows,
        classes, H, W) probabilities, normals (rows, 3, H, W) vectors."""
        raw = self.outputs(inputs)
        result = {}
        for task, out in zip(self.meta["tasks"], raw):
            out = out.double()
            kind, scale = task["type"], task.get("target_scale")
            if kind == "binary":
                value = torch.sigmoid(out[:, 0])
            elif kind in ("multiclass", "segmentation"):
                value = torch.softmax(out, dim=1)
            elif kind in ("regression", "dense_regression"):
                value = out[:, 0]
                if scale is not None:
                    value = value * scale["std"] + scale["mean"]
            else:
                value = out
            result[task["name"]] = value.numpy()
        return result


def load_network(path: str | os.PathLike) -> NetworkPredictor:
    """The network exported to folder ``path`` (``taskgroup export --out DIR`` writes one per
    chosen network under ``DIR/networks/``), ready to :meth:`NetworkPredictor.predict`."""
    from .models import ModelShape, build_model

    path = Path(path)
    meta_path = path / NETWORK_FILE
    if not meta_path.exists():
        raise PredictError(f"{path} is not an exported network: no {NETWORK_FILE}")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != NETWORK_FORMAT:
        raise PredictError(
            f"{meta_path}: format {meta.get('format')!r}; this taskgroup reads {NETWORK_FORMAT}"
        )
    build = meta["model"]
    shape = dict(build["shape"])
    for key in ("hidden", "head_hidden", "input_shape"):
        shape[key] = _as_shape(shape[key])
    if shape.get("label_size") is not None:
        shape["label_size"] = _as_shape(shape["label_size"])
    trunk = meta.get("trunk")
    if trunk:
        _check_trunk_source(trunk)
    # The arguments the training's Trainer.build_model passed; the generator only initialises
    # weights that load_state_dict then replaces.
    model = build_model(
        build["architecture"], ModelShape(**shape), _as_shape(build["widths"]),
        [int(d) for d in build["output_dims"]], torch.Generator(), build["dense"],
        float(build["width"]),
    )  # fmt: skip
    # weights_only: the weights file is data, never code to run.
    state = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return NetworkPredictor(model, meta)


def _check_trunk_source(trunk: dict) -> None:
    from .models.user import TrunkError, trunk_source_hash

    try:
        current = trunk_source_hash(trunk["factory"])
    except TrunkError as err:
        raise PredictError(
            f"{err}; the network's trunk is your own ({trunk['factory']}): put its module on "
            "PYTHONPATH or in the working directory"
        ) from None
    if current != trunk.get("source_hash"):
        warnings.warn(
            f"model.trunk {trunk['factory']!r}: its file differs from the one trained "
            "(trunk_source); the weights load only if the module it builds is unchanged",
            stacklevel=3,
        )


# ---- files ---------------------------------------------------------------------------------
def read_input(path: str | os.PathLike, array_name: str = "x"):
    """A CSV/TSV or Parquet file as a pyarrow Table, or a ``.npz`` file's input array (named
    ``array_name``, or its only array)."""
    path = Path(path)
    if not path.exists():
        raise PredictError(f"--input: file {path} does not exist")
    suffixes = "".join(path.suffixes).lower()
    try:
        if suffixes.endswith(".npz"):
            with np.load(path, allow_pickle=False) as npz:
                names = list(npz.files)
                if array_name in names:
                    return npz[array_name]
                if len(names) == 1:
                    return npz[names[0]]
            raise PredictError(
                f"--input: {path} has no array {array_name!r} (the training inputs' name); "
                f"it holds {names}"
            )
        if suffixes.endswith(".parquet") or suffixes.endswith(".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if ".csv" in suffixes or ".tsv" in suffixes:
            import pyarrow.csv as pacsv

            options = pacsv.ParseOptions(delimiter="\t" if ".tsv" in suffixes else ",")
            return pacsv.read_csv(path, parse_options=options)
    except (OSError, ValueError) as err:
        if isinstance(err, PredictError):
            raise
        raise PredictError(f"--input: cannot read {path}: {err}") from None
    raise PredictError(f"--input: {path} is neither CSV/TSV, Parquet nor .npz")


def load_answer(path: str | os.PathLike) -> dict:
    import yaml

    path = Path(path)
    answer_path = path / ANSWER_FILE
    if not answer_path.exists():
        raise PredictError(
            f"{path}: no {ANSWER_FILE} (write one with taskgroup export --budget B --out {path})"
        )
    answer = yaml.safe_load(answer_path.read_text())
    if answer.get("format") != ANSWER_FORMAT:
        raise PredictError(f"{answer_path}: format {answer.get('format')!r}, not {ANSWER_FORMAT}")
    return answer


def predict_file(
    folder: str | os.PathLike, input_path: str | os.PathLike, out: str | os.PathLike, log=print
) -> int:
    """Predict every task of the answer in ``folder`` (or of one exported network folder) for
    the rows of ``input_path``, each by the network the answer assigns it; write the long
    PREDICTIONS table to ``out``. Returns the rows written."""
    import pyarrow as pa

    from .schema import PREDICTIONS, conform, write_table

    folder = Path(folder)
    if (folder / NETWORK_FILE).exists():
        meta = json.loads((folder / NETWORK_FILE).read_text())
        plan = [(folder, meta["network"], [t["name"] for t in meta["tasks"]])]
    else:
        answer = load_answer(folder)
        plan = [
            (folder / entry["path"], name, list(entry["serves"]))
            for name, entry in answer["networks"].items()
        ]
    parts: list[pa.Table] = []  # one per task: columnar, sane at 617 tasks x 100,000 rows
    cache: dict[str, object] = {}
    skipped = []
    for network_dir, network, serves in plan:
        predictor = load_network(network_dir)
        name = predictor.meta["input"].get("array", "x")
        if name not in cache:
            cache[name] = read_input(input_path, name)
        inputs = cache[name]
        predictions = predictor.predict(inputs)
        n = len(next(iter(predictions.values())))  # rows as the network read them
        for task in predictor.meta["tasks"]:
            if task["name"] not in serves:
                continue
            if task["type"] in DENSE:
                skipped.append(task["name"])
                continue
            value = predictions[task["name"]]
            label = pa.nulls(n, pa.string())
            probabilities = pa.nulls(n, pa.list_(pa.float64()))
            if task["type"] == "multiclass":
                ids = value.argmax(axis=1)
                names = task.get("class_labels") or [str(i) for i in range(value.shape[1])]
                label = pa.array(np.asarray(names, dtype=object)[ids], pa.string())
                flat = pa.array(np.ascontiguousarray(value).ravel())
                probabilities = pa.FixedSizeListArray.from_arrays(flat, value.shape[1])
                value = ids
            parts.append(
                pa.table(
                    {
                        "row": pa.array(np.arange(n, dtype=np.int64)),
                        "task": pa.repeat(task["name"], n),
                        "prediction": pa.array(np.asarray(value, dtype=np.float64)),
                        "label": label,
                        "probabilities": probabilities.cast(pa.list_(pa.float64())),
                        "network": pa.repeat(network, n),
                    }
                )  # fmt: skip
            )
    if skipped:
        log(
            f"warning: dense task(s) {skipped[:10]} not written (per-pixel predictions do not "
            "fit the long table): use pipeline.load_network(folder).predict(x)"
        )
    table = (
        pa.concat_tables([conform(t, PREDICTIONS) for t in parts])
        if parts
        else PREDICTIONS.empty_table()
    )
    write_table(table, out, PREDICTIONS)
    return table.num_rows
