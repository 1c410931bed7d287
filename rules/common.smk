# Config validation and the helpers every rule uses. Nothing runs before the config is valid.

import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The package is importable from a plain clone too (no install needed to read the workflow).
sys.path.insert(0, str(Path(workflow.basedir)))

from pipeline.config import ConfigError, resolve_config
from pipeline.datasets import loader_config
from pipeline.jobs import collect_job, select_job, split_job, train_job
from pipeline.sweep import (
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
# File stems are short hashes for odd or many task names: the wildcard is looked up, never
# parsed back into task names (a name may contain "+", "/" or anything else).
NETWORK_BY_STEM = {(net.size, net.stem): net for net in NETWORKS}


wildcard_constraints:
    architecture="[a-z0-9_]+",
    weighting="[a-z0-9_]+",
    seed=r"\d+",
    size="full|half",
    stem="[^/]+",


def network_file(network, seed, method=METHODS[0]):
    return f"{RESULTS}/runs/{method}/seed{seed}/{network.size}/{network.stem}.parquet"


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
    network = NETWORK_BY_STEM.get((wildcards.size, wildcards.stem))
    if network is None:
        raise WorkflowError(
            f"no planned {wildcards.size} network has the file stem {wildcards.stem!r} "
            "(results/networks.parquet maps stems to task lists)"
        )
    return network_spec(
        config,
        network.tasks,
        wildcards.size,
        int(wildcards.seed),
        wildcards.architecture,
        wildcards.weighting,
    )
