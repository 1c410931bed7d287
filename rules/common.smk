# Config validation and the helpers every rule uses. Nothing runs before the config is valid.

import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

# The package is importable from a plain clone too (no install needed to read the workflow).
sys.path.insert(0, str(Path(workflow.basedir)))

from pipeline.config import ConfigError, merge_config_layers, resolve_config
from pipeline.datasets import split_params
from pipeline.jobs import (
    affinity_job,
    collect_job,
    estimate_job,
    estimates_job,
    groups_job,
    select_job,
    split_job,
    train_job,
)
from pipeline.pack_size import threads_argv
from pipeline.strategies import build_strategy, read_decided_groups
from pipeline.strategies.controls import read_controls
from pipeline.sweep import (
    Network,
    method_key,
    network_spec,
    plan_networks,
    sweep_methods,
)


def config_layers():
    """The config's layers in Snakemake's order: the Snakefile's configfile (unless
    --replace-workflow-config), each --configfile, then --config. Job processes get the same
    files and --config, so they rebuild the same config."""
    from snakemake.common.configfile import load_configfile

    given = list(workflow.overwrite_configfiles)
    # workflow.configfiles: the --configfile files, then the configfile: directive's.
    directive = list(workflow.configfiles)[len(given) :]
    if workflow.config_settings.replace_workflow_config:
        directive = []
    layers = [load_configfile(str(path)) for path in [*directive, *given]]
    if workflow.config_settings.config:
        layers.append(dict(workflow.config_settings.config))
    return layers


# Snakemake merged the layers key by key, datasets too (two tables' targets would mix): merge
# them again with a later dataset replacing the earlier whole, as `taskgroup validate` does
# (pipeline.config.merge_config_layers).
_layers = config_layers()
_effective = merge_config_layers(_layers) if _layers else dict(config)
config.clear()

try:
    # The data checks (labels and classes per split) load the dataset: once, in the main
    # process; jobs re-reading the workflow skip them. Data warnings (a single class in val or
    # test: NaN ROC-AUC there) are printed, not fatal.
    _resolved = resolve_config(
        _effective,
        check_data=workflow.is_main_process,
        warn=lambda message: logger.warning(f"taskgroup warning: {message}"),
    )
except ConfigError as err:
    raise WorkflowError(str(err)) from None
config.update(_resolved)


def _some_network_packs():
    """Can a single-task network of some training method of the sweep be packed?"""
    from pipeline.packing import unpackable_reason

    tasks, seed = tuple(config["dataset"]["tasks"][:1]), config["sweep"]["seeds"][0]
    return any(
        unpackable_reason(network_spec(config, tasks, "full", seed, a, w)) is None
        for a, w in sweep_methods(config)
    )


# A cluster group job's Snakemake process (the SLURM plugin's job step) would start each
# training as a process of its own, where it cannot pack: it restarts itself once, with the
# local executor and its `run:` jobs as threads (pipeline/pack_size.py says why and how).
_threaded = threads_argv(sys.argv, config["training"]["pack"], _some_network_packs)
if _threaded is not None:
    logger.info(
        "taskgroup: this group job restarts on the local executor with --force-use-threads, "
        "so that its trainings pack (training.pack: off keeps one process per training)"
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "snakemake", *_threaded])

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
# The sweep's strategy (pipeline/strategies/): the rules ask it what to train and estimate.
# An estimating one decides a second stage of networks at run time (rules/estimate.smk).
STRATEGY = build_strategy(config["sweep"], TASKS)
ESTIMATES = STRATEGY.estimates
ALL_IN_ONE = Network(tuple(TASKS), "full")


wildcard_constraints:
    architecture="[a-z0-9_]+",
    weighting="[a-z0-9_]+",
    seed=r"\d+",
    size="full|half",
    stem="[^/]+",


def network_file(network, seed, method=METHODS[0]):
    return f"{RESULTS}/runs/{method}/seed{seed}/{network.size}/{network.stem}.parquet"


def first_stage_files():
    return [
        network_file(net, seed, method)
        for method in METHODS
        for seed in SEEDS
        for net in NETWORKS
    ]


def groups_file(method):
    return f"{RESULTS}/groups/{method}.json"


def second_stage(method):
    """The networks the checkpoint decided to train for ``method`` (none before it ran): the
    decided groups and their random controls, less those the first stage trains anyway.
    """
    path = groups_file(method)
    if not ESTIMATES or not os.path.exists(path):
        return []
    decided = [*read_decided_groups(path), *read_controls(path)]
    return [
        net
        for net in dict.fromkeys(decided)
        if (net.size, net.stem) not in NETWORK_BY_STEM
    ]


def decided_network_files(wildcards=None):
    """The network files an estimating strategy's checkpoint decides (asking for them makes
    Snakemake run the checkpoint). Apart from the first stage's, which are listed statically:
    behind a checkpoint they would wait for it, and TAG's 617 singles would idle a core during
    the estimation."""
    files = []
    if ESTIMATES:
        for method in METHODS:
            architecture, weighting = method.split("-", 1)
            checkpoints.groups.get(architecture=architecture, weighting=weighting)
            files += [
                network_file(net, seed, method)
                for seed in SEEDS
                for net in second_stage(method)
            ]
    return files


def train_spec(wildcards):
    """The network's full training spec: its Snakemake params, so it reruns exactly when
    its own training would change (not when tasks or budgets are added elsewhere)."""
    network = NETWORK_BY_STEM.get((wildcards.size, wildcards.stem))
    if network is None:
        method = f"{wildcards.architecture}-{wildcards.weighting}"
        decided = {(net.size, net.stem): net for net in second_stage(method)}
        network = decided.get((wildcards.size, wildcards.stem))
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


def estimate_file(method, seed):
    """One method's and seed's estimate: TAG's recorded affinity, or an estimation job's."""
    if STRATEGY.estimation == "recorded":
        return f"{RESULTS}/affinity/{method}/seed{seed}.parquet"
    return f"{RESULTS}/estimate/{method}/seed{seed}.parquet"


def estimate_inputs(wildcards):
    """An estimation job's inputs, as its strategy names them."""
    method = f"{wildcards.architecture}-{wildcards.weighting}"
    return {
        "split": rules.split.output.split,
        **STRATEGY.estimate_inputs(method, int(wildcards.seed), network_file, TASKS),
    }


def group_inputs(wildcards):
    """The groups checkpoint decides from the estimates (one per seed) where the strategy
    makes them, from the first stage's metrics otherwise."""
    method = f"{wildcards.architecture}-{wildcards.weighting}"
    if STRATEGY.estimation is not None:
        return {"estimates": [estimate_file(method, seed) for seed in SEEDS]}
    return {
        "metrics": [
            network_file(net, seed, method) for seed in SEEDS for net in NETWORKS
        ]
    }


def picture_inputs(wildcards):
    """What the picture of the first training method's estimate is drawn from: its estimate
    files, or (estimate made inside the checkpoint) its first-stage metrics."""
    method = METHODS[0]
    if STRATEGY.estimation is not None:
        return {"estimates": [estimate_file(method, seed) for seed in SEEDS]}
    return {
        "first_stage": [
            network_file(net, seed, method) for seed in SEEDS for net in NETWORKS
        ]
    }


def pending_trainings():
    """The trainings this Snakemake process still has to run, for packed training
    (pipeline.packing): a local run's whole DAG, a cluster group job's group (its process runs
    them as threads: pipeline/pack_size.py); a single cluster job sees its own job only, so
    it trains alone. On Dask, an in-process group job's trainings pack through
    pipeline.packing.group_pending instead (docs/backends.md)."""
    from pipeline.packing import TrainJob

    dag = workflow.dag
    if dag is None:
        return []
    try:
        jobs = list(dag.needrun_jobs())
    except RuntimeError:
        # The DAG changed under us (a checkpoint re-evaluation): no packing this time.
        return []
    return [
        TrainJob(
            job.params.spec,
            str(job.output.metrics),
            str(job.log[0]),
            job.params.checkpoint,
            str(job.input.split),
            str(job.output.samples),
        )
        for job in jobs
        if job.rule.name == "train"
    ]
