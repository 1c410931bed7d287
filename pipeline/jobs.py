"""The bodies of the workflow's ``run:`` rules, one call each (rules stay a table of facts)."""

from __future__ import annotations

from collections.abc import Callable


def _named(namedlist) -> dict:
    # Snakemake's named lists and the Dask executor's plain dicts alike.
    return dict(namedlist.items())


def split_job(input, output, params, log, threads) -> None:
    from .split import write_split_for

    write_split_for(params.dataset, params.split, output.split, log[0])


def train_job(
    input, output, params, log, threads=1, pending=None, pack="off", group=None, config=None
) -> None:
    """The ``train`` and ``estimate_affinity`` rules' body, wherever the job runs: a Snakemake
    thread or job process (Snakemake's named lists) or a Dask worker in process (its
    ``inprocess_entry``, plain dicts). On Dask, a group job's members also get ``group`` (every
    member's files and params) and ``config``: the group's trainings pack with each other."""
    if group is not None and config is not None:
        from .packing import group_pending

        pending, pack = group_pending(group), config["training"]["pack"]
    run_snakemake_job(
        _named(input), _named(output), _named(params), list(log), threads, pending, pack
    )


def run_snakemake_job(
    input: dict,
    output: dict,
    params: dict,
    log: list,
    threads: int = 1,
    pending: Callable[[], list] | None = None,
    pack: str | int | bool = "off",
) -> None:
    """Train one network and write its files (``estimate_affinity``'s params add ``tag``: the
    network's training is the same, with TAG's affinity recorded to ``output["affinity"]``).
    With ``pending`` (the trainings this process's Snakemake still has to run) and ``pack``
    (``training.pack``), the network is trained in a pack with same-shape ones
    (``pipeline.packing``); a network that cannot be packed says why in its log, and a pack
    that fails has each member retrained alone, so one member's error stays its own.

    A training that raises fails its job, like any crashed job, unless the network is only a
    random control of an estimating strategy (``results/groups/<method>.json`` lists it as a
    control and not as a decided group): a control measures the strategy and is not part of
    any answer it gives, so its error is recorded (status "failed", the traceback in its log)
    and the solve goes on without it, as with a control that diverged. An error of the
    machine's moment (out of memory, an ``OSError``: :func:`pipeline.failures.transient`)
    fails the job even then, so that a rerun tries again."""
    import time

    from .failures import transient
    from .sweep import Network

    # When the attempt alone began: a failed pack retries alone (and its time is the pack's).
    started = [time.perf_counter()]
    try:
        _train_network(input, output, params, log, threads, pending, pack, started)
    except Exception as error:
        network = Network(tuple(params["spec"]["tasks"]), params["spec"]["size"])
        groups = _control_only_in(output["metrics"], network)
        if groups is None:
            raise
        if transient(error):
            with open(log[0], "a") as log_file:
                log_file.write(
                    f"{type(error).__name__}: {error}: not recorded as this control's result "
                    "(the machine's moment, not the training's); the job fails and a rerun "
                    "tries again\n"
                )
            raise
        seconds = time.perf_counter() - started[0]
        _record_failed_control(output, params, log, error, groups, seconds)


def _control_only_in(metrics_file: str, network):
    """The groups file that lists this network as a random control and not as a decided
    group, or None. The run file's path names the results folder and the training method:
    ``<results>/runs/<method>/seed<s>/<size>/<stem>.parquet`` (rules/train.smk)."""
    from pathlib import Path

    from .strategies.controls import control_only_networks

    path = Path(metrics_file)
    if len(path.parents) < 5 or path.parents[3].name != "runs":
        return None
    groups = path.parents[4] / "groups" / f"{path.parents[2].name}.json"
    if not groups.exists():
        return None
    try:
        control_only = network in control_only_networks(groups)
    except (OSError, ValueError, KeyError):
        return None
    return groups if control_only else None


def _record_failed_control(output, params, log, error: Exception, groups, seconds: float) -> None:
    import traceback

    from .datasets import load_dataset
    from .schema import METRICS, TEST_LOSSES, write_table
    from .training import failed_table, resolve_device

    spec = params["spec"]
    data = load_dataset(spec["dataset"])
    kinds = [data.task_types[data.task_index(t)] for t in spec["tasks"]]
    with open(log[0], "a") as log_file:
        log_file.write("".join(traceback.format_exception(error)))
        log_file.write(
            f"failed: recorded as status 'failed' and left out of the solve, not fatal: this "
            f"network is only a random control ({groups}). Delete its run file to retry.\n"
        )
    if "samples" in output:
        write_table(TEST_LOSSES.empty_table(), output["samples"], TEST_LOSSES)
    table = failed_table(spec, data.name, kinds, str(resolve_device()), seconds)
    write_table(table, output["metrics"], METRICS)


def _train_network(input, output, params, log, threads, pending, pack, started=None) -> None:
    import time

    import torch

    from .datasets import load_dataset
    from .schema import AFFINITY, METRICS, write_table
    from .split import read_split
    from .sweep import Network, spec_hash
    from .training import Checkpointer, Trainer, resolve_device

    torch.set_num_threads(max(1, int(threads)))
    spec = params["spec"]
    tag = params.get("tag")
    not_packed, pack_failed = None, False
    if pending is not None and tag is None:
        from .pack_size import pack_size
        from .packing import PackFailed, run_packed_job, unpackable_reason

        if pack_size(pack) > 1:
            not_packed = unpackable_reason(spec)
            if not_packed is None:
                try:
                    run_packed_job(input, output, params, log, pending, pack_size(pack))
                    return
                except PackFailed as failed:
                    # Alone it trains bitwise as in the pack (from its own checkpoint):
                    # only the member whose error it was fails again.
                    not_packed = f"its pack failed ({failed.__cause__!r}); trained alone"
                    pack_failed = True
                    if started is not None:
                        started[0] = time.perf_counter()
    device = resolve_device()
    data = load_dataset(spec["dataset"])
    labels = read_split(input["split"], data.n_rows)
    # After a failed pack the log holds the pack's lines and error: kept, this run follows.
    with open(log[0], "a" if pack_failed else "w") as log_file:

        def write(line: str) -> None:
            log_file.write(line + "\n")
            log_file.flush()

        write(f"network {Network(tuple(spec['tasks']), spec['size']).name} on {device}")
        if not_packed is not None:
            write(f"not packed: {not_packed}")
        checkpoint = Checkpointer(params.get("checkpoint"))
        trainer = Trainer(data, labels, spec, device, write, checkpoint)
        if tag is not None:
            from .affinity.lookahead import AffinityRecorder

            trainer.observer = AffinityRecorder(trainer, tag["every"], tag["lookahead_lr"])
            # A plain training's checkpoint must not resume as an estimation (no affinity yet).
            trainer.state_key = spec_hash({**spec, "tag": tag})
        table = trainer.fit()
        if tag is not None:
            write(f"lookahead: {trainer.observer.seconds:.2f}s of the training's time")
    if tag is not None:
        # The network's own rows keep its plain spec's hash: they equal a plain training's.
        write_table(trainer.observer.table(trainer.state_key), output["affinity"], AFFINITY)
    if "samples" in output:
        from .sample_losses import final_sample_losses, write_sample_losses

        write_sample_losses(final_sample_losses(trainer), output["samples"])
    write_table(table, output["metrics"], METRICS)
    checkpoint.remove()


def collect_job(input, output, params, log, threads) -> None:
    from .collect import collect

    files = [*input.metrics, *input.decided]

    def may_fail(path: str, network) -> bool:
        return _control_only_in(path, network) is not None

    rows = collect(files, output.parquet, output.duckdb, output.networks, may_fail)
    with open(log[0], "w") as fh:
        print(f"collected {len(files)} files, {rows} rows", file=fh)


def select_job(input, output, params, log, threads) -> None:
    from .selection import run_selection

    try:
        groups = list(_named(input).get("groups", []))
        run_selection(
            input.metrics, params.selection, output, params.tasks, log[0], groups,
            params.strategy, input.networks, input.split,
        )  # fmt: skip
    except Exception as err:
        with open(log[0], "a") as fh:
            print(f"select failed: {err}", file=fh)
        raise


def affinity_job(input, output, params, log) -> None:
    from .strategies.tag import concat_affinity

    rows = concat_affinity(list(input.affinity), output.affinity)
    with open(log[0], "w") as fh:
        print(f"{len(input.affinity)} files, {rows} rows", file=fh)


def estimate_job(input, output, params, log) -> None:
    """A strategy's estimation job (estimation "job"): one training method and seed."""
    from .strategies import build_strategy

    build_strategy(params.sweep).estimate(_named(input), output.estimate, params.settings, log[0])


def groups_job(input, output, params, log) -> None:
    """The groups checkpoint: the strategy decides which groups to train for the budgets and,
    with selection.controls, random control groups of the same sizes
    (pipeline/strategies/controls.py)."""
    from .strategies import build_strategy
    from .strategies.controls import draw_controls
    from .strategies.groups import write_decided_groups
    from .sweep import Network

    strategy = build_strategy(params.sweep, params.tasks)
    named = _named(input)
    estimates = list(named.get("estimates", []))
    metrics = list(named.get("metrics", []))
    decided = strategy.decide(estimates, metrics, params.tasks, params.selection)
    first_stage = {net.name for net in strategy.first_stage(params.tasks) if len(net.tasks) > 1}
    for entry in decided["networks"]:
        entry["first_stage"] = Network(tuple(entry["tasks"]), entry["size"]).name in first_stage
    if params.selection.get("controls", True):
        decided["controls"] = draw_controls(
            decided["networks"], params.tasks, first_stage, params.selection["random_seed"]
        )
    decided = {"strategy": strategy.name, "estimate": strategy.estimate_description,
               "method": params.method, "tasks": list(params.tasks), **decided}  # fmt: skip
    write_decided_groups(decided, output.groups)
    with open(log[0], "w") as fh:
        print(
            f"{strategy.name}: {len(decided['networks'])} decided group(s), "
            f"{len(decided.get('controls', []))} control(s)",
            file=fh,
        )


def estimates_job(input, output, params, log) -> None:
    from .strategies.report import estimate_picture, estimates_report

    estimates_report(input.metrics, list(input.groups), output.table, output.summary)
    named = _named(input)
    shown = estimate_picture(
        input.metrics,
        input.groups[0],
        list(named.get("estimates", [])),
        list(named.get("first_stage", [])),
        output.picture,
    )
    with open(log[0], "w") as fh:
        print(f"estimates vs measured for {len(input.groups)} method(s)", file=fh)
        print(f"picture of {input.groups[0]}: {shown}", file=fh)
