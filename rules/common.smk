# Config validation and the helpers every rule uses. Nothing runs before the config is valid.

import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The package is importable from a plain clone too (no install needed to read the workflow).
sys.path.insert(0, str(Path(workflow.basedir)))

from pipeline.config import ConfigError, resolve_config
from pipeline.jobs import collect_job, select_job, split_job, train_job
from pipeline.sweep import (
    TASK_SEP,
    method_key,
    network_spec,
    plan_networks,
    sweep_methods,
)

try:
    # The data checks (labels and classes per split) load the dataset: once, in the main
    # process; jobs re-reading the workflow skip them.
    _resolved = resolve_config(config, check_data=workflow.is_main_process)
except ConfigError as err:
    raise WorkflowError(str(err)) from None
config.update(_resolved)

RESULTS = config["results_dir"]
TASKS = config["dataset"]["tasks"]
SEEDS = config["sweep"]["seeds"]
# Every network is trained with every method (sweep.methods; default: the one pair of
# model.architecture x training.weighting); results keep both as columns.
METHODS = [method_key(a, w) for a, w in sweep_methods(config)]
NETWORKS = plan_networks(TASKS, config["sweep"])


wildcard_constraints:
    architecture="[a-z0-9_]+",
    weighting="[a-z0-9_]+",
    seed=r"\d+",
    size="full|half",
    tasks="[^/]+",


def network_file(network, seed, method=METHODS[0]):
    return (
        f"{RESULTS}/runs/{method}/seed{seed}/{network.size}/{network.tasks_key}.parquet"
    )


def all_network_files():
    return [
        network_file(net, seed, method)
        for method in METHODS
        for seed in SEEDS
        for net in NETWORKS
    ]


def train_spec(wildcards):
    """The network's full training spec: its Snakemake params, so it reruns exactly when
    its own training would change (not when tasks or budgets are added elsewhere)."""
    tasks = wildcards.tasks.split(TASK_SEP)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise WorkflowError(f"network {wildcards.tasks!r}: unknown task(s) {unknown}")
    return network_spec(
        config,
        tuple(tasks),
        wildcards.size,
        int(wildcards.seed),
        wildcards.architecture,
        wildcards.weighting,
    )
