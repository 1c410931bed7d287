"""The bodies of the workflow's ``run:`` rules, one call each (rules stay a table of facts)."""

from __future__ import annotations


def _named(namedlist) -> dict:
    return dict(namedlist.items())


def split_job(input, output, params, log, threads) -> None:
    from .split import write_split_for

    write_split_for(params.dataset, params.split, output.split, log[0])


def train_job(input, output, params, log, threads, pending=None, pack="off") -> None:
    from .training import run_snakemake_job

    run_snakemake_job(
        _named(input), _named(output), _named(params), list(log), threads, pending, pack
    )


def collect_job(input, output, params, log, threads) -> None:
    from .collect import collect

    files = [*input.metrics, *input.decided]
    rows = collect(files, output.parquet, output.duckdb, output.networks)
    with open(log[0], "w") as fh:
        print(f"collected {len(files)} files, {rows} rows", file=fh)


def select_job(input, output, params, log, threads) -> None:
    from .selection import run_selection

    try:
        groups = list(_named(input).get("groups", []))
        run_selection(
            input.metrics, params.selection, output, params.tasks, log[0], groups, params.strategy
        )
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
