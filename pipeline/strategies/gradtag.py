"""``gradtag``: singles and the all-in-one network; every pair's (or sampled subset's)
fine-tuned losses are estimated from projected gradients of that one training, without training
per subset; the groups selected on the resulting higher-order affinity are then trained (Li,
Sharma & Zhang, "Scalable Multitask Learning Using Gradient-based Estimation of Task Affinity",
KDD 2024; code github.com/VirtuosoResearch/ScalableMTL). The estimator, what it takes from the
paper and what differs: ``pipeline/affinity/gradtag.py``; measured against the exhaustive
sweep: ``bench/RESULTS_estimation.md``.

The estimation job (one per training method and seed) runs after the all-in-one network's
training, whose spec it re-derives and checks against that network's recorded config hash: it
trains the same network to the end of ``sweep.gradtag.epoch`` (the full training's first
epochs, draw for draw), takes the projected gradient statistics there, and writes every
subset's estimated member losses (``results/estimate/<method>/seed<seed>.parquet``, schema
``GRADTAG``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyarrow.parquet as pq

from .base import Strategy
from .groups import groups_from_affinity

# The training spec's parts the all-in-one network's spec is rebuilt from.
SPEC_KEYS = ("dataset", "split", "model", "training")
# The estimation log's line when the estimate failed (the groups file quotes it).
FAILED_LOG_LINE = "gradtag estimation failed"


def gradtag_affinity_of(files: Sequence[str], tasks: Sequence[str]):
    """The affinity of the estimate files (one per seed): Z(j -> i) = -(mean over seeds and the
    subsets holding both of i's estimated loss relative to its estimate alone)."""
    from ..affinity.gradtag import affinity_from_tables

    frames = [pq.read_table(f, columns=["members", "task", "relative_loss"]).to_pandas()
              for f in files]  # fmt: skip
    return affinity_from_tables(frames, tasks)


class GradTag(Strategy):
    name = "gradtag"
    estimates = True
    estimation = "job"
    needs_all_in_one = True  # its first epochs are the meta-initialisation; its file the baseline
    estimate_description = (
        "how much lower each member's estimated validation loss is with the other members than "
        "alone (linearised fine-tune from the all-in-one network's first epoch; mean over the "
        "estimated subsets holding the pair; higher is better)"
    )
    estimate_unit = "% lower estimated loss than alone"

    def readable(self, value: float) -> float:
        # The raw estimate is minus the mean relative loss (1 = no change).
        return 100.0 * (1.0 + value)

    def check(self, tasks: Sequence[str]) -> None:
        from ..affinity.gradtag import estimation_subsets

        super().check(tasks)
        options = self.options
        size = int(options.get("size", 2))
        if size > len(tasks):
            raise ValueError(
                f"config key sweep.gradtag.size: {size} tasks per subset, but only {len(tasks)} "
                "tasks"
            )
        if size > 2 or options.get("subsets") is not None:
            try:
                estimation_subsets(tasks, size, options.get("subsets"), int(options.get("seed", 0)))
            except ValueError as err:
                raise ValueError(f"config key sweep.gradtag.subsets: {err}") from None

    def check_config(self, config: dict, data) -> None:
        from ..affinity.gradtag import SUPPORTED_TYPES
        from ..sweep import sweep_methods

        epoch, epochs = int(self.options.get("epoch", 1)), int(config["training"]["epochs"])
        if epoch > epochs:
            raise ValueError(
                f"config key sweep.gradtag.epoch: {epoch} is past training.epochs ({epochs})"
            )
        other = sorted({a for a, _ in sweep_methods(config) if a != "hard_sharing"})
        if other:
            raise ValueError(
                f"config key model.architecture: sweep.strategy gradtag needs hard_sharing "
                f"(one shared trunk, linear heads), not {', '.join(other)}"
            )
        if list(config["model"]["head_hidden"]):
            raise ValueError(
                "config key model.head_hidden: sweep.strategy gradtag needs one linear layer "
                "per head ([])"
            )
        types = {t: data.task_types[data.task_index(t)] for t in config["dataset"]["tasks"]}
        bad = [f"{t!r} ({k})" for t, k in types.items() if k not in SUPPORTED_TYPES]
        if bad:
            raise ValueError(
                f"config key dataset.tasks: sweep.strategy gradtag supports binary and "
                f"regression tasks, not {', '.join(bad[:5])}"
            )

    def estimate_inputs(self, method, seed, network_file, tasks) -> dict[str, list[str]]:
        from ..sweep import Network

        return {"all_in_one": [network_file(Network(tuple(tasks), "full"), seed, method)]}

    def estimate_params(self, config: dict) -> dict:
        return {
            "config": {key: config[key] for key in SPEC_KEYS},
            "options": self.options,
        }

    def estimate(self, input: dict, output: str, params: dict, log: str) -> None:
        import time

        import torch

        from ..affinity.gradtag import estimates_table, estimation_subsets, meta_statistics
        from ..datasets import load_dataset
        from ..schema import GRADTAG, write_table
        from ..split import read_split
        from ..sweep import Network, network_spec, spec_hash
        from ..training import resolve_device

        started = time.perf_counter()
        torch.set_num_threads(1)
        all_in_one = (
            pq.read_table(
                input["all_in_one"][0],
                columns=["tasks", "seed", "architecture", "weighting", "config_hash"],
            )
            .slice(0, 1)
            .to_pylist()[0]
        )
        tasks = tuple(all_in_one["tasks"])
        spec = network_spec(
            params["config"], tasks, "full", int(all_in_one["seed"]),
            all_in_one["architecture"], all_in_one["weighting"],
        )  # fmt: skip
        if spec_hash(spec) != all_in_one["config_hash"]:
            raise ValueError(
                f"gradtag: {input['all_in_one'][0]} was trained with another spec than this "
                "config's all-in-one network (rerun it)"
            )
        options = self.options
        epoch, dim = int(options.get("epoch", 1)), int(options.get("dim", 128))
        ridge, seed = float(options.get("ridge", 1.0)), int(options.get("seed", 0))
        try:
            data = load_dataset(spec["dataset"])
            labels = read_split(input["split"], data.n_rows)
            stats = meta_statistics(data, labels, spec, epoch, dim, seed, resolve_device())
            subsets = estimation_subsets(
                tasks, int(options.get("size", 2)), options.get("subsets"), seed
            )
            provenance = {
                "dataset": data.name, "network": Network(tasks, "full").name,
                "architecture": spec["architecture"], "weighting": spec["weighting"],
                "seed": int(spec["seed"]), "meta_epoch": epoch,
                "config_hash": spec_hash({**spec, "gradtag": options}),
            }  # fmt: skip
            table = estimates_table(stats, subsets, ridge, provenance)
            bad = sum(not math.isfinite(v) for v in table["relative_loss"].to_pylist())
            if bad:
                raise FloatingPointError(
                    f"{bad} of {table.num_rows} estimated losses are not finite (the "
                    f"meta-training diverged by epoch {epoch}?)"
                )
        except Exception as error:  # recorded: an estimate is never fatal to the answer
            import traceback

            from ..failures import transient

            retry = transient(error)  # the machine's moment, not the estimate's
            with open(log, "w") as fh:
                fh.write("".join(traceback.format_exception(error)))
                if retry:
                    print(f"gradtag: {type(error).__name__} is not recorded as the estimate's "
                          "result; the job fails and a rerun tries again", file=fh)  # fmt: skip
                else:
                    print(
                        f"{FAILED_LOG_LINE}: {type(error).__name__}: {error}. Recorded as an "
                        "empty estimate: no groups are decided from it, and the answer is "
                        "solved over the first stage (singles and the all-in-one network). "
                        "Delete this estimate file to retry.",
                        file=fh,
                    )
            if retry:
                raise
            write_table(GRADTAG.empty_table(), output, GRADTAG)
            return
        write_table(table, output, GRADTAG)
        with open(log, "w") as fh:
            print(
                f"gradtag: theta* at epoch {epoch}, d {dim}, ridge {ridge:g}: "
                f"{len(subsets)} subsets of {len(tasks)} tasks estimated; statistics "
                f"{stats.seconds:.1f}s, estimates {table['estimate_s'][0].as_py():.2f}s, "
                f"job {time.perf_counter() - started:.1f}s",
                file=fh,
            )

    def affinity(self, estimates, metrics, tasks):
        usable, _ = split_failed(estimates)
        return gradtag_affinity_of(usable, tasks) if usable else None

    def decide(self, estimates, metrics, tasks, selection) -> dict:
        usable, failed = split_failed(estimates)
        if not usable:
            return {
                "networks": [], "groupings": [],
                "estimate_failed": f"{FAILED_LOG_LINE} (every seed: {', '.join(failed)}; the "
                "reason is in results/logs/estimate/): no group was decided, the answer is the "
                "first stage's",
            }  # fmt: skip
        decided = groups_from_affinity(gradtag_affinity_of(usable, tasks), selection["budgets"])
        if failed:
            decided["estimate_failed"] = (
                f"{FAILED_LOG_LINE} for {', '.join(failed)}: groups decided from the other seeds"
            )
        return decided


def split_failed(estimates: Sequence[str]) -> tuple[list[str], list[str]]:
    """(estimate files with rows, the failed ones: empty, as a failed estimation job leaves
    them)."""
    usable, failed = [], []
    for path in estimates:
        (usable if pq.read_metadata(path).num_rows else failed).append(str(path))
    return usable, failed
