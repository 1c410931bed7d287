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
        run_selection(
            input.metrics, params.selection, output, params.tasks, log[0], input.networks,
            input.split,
        )  # fmt: skip
    except Exception as err:
        with open(log[0], "a") as fh:
            print(f"select failed: {err}", file=fh)
        raise


def affinity_job(input, output, params, log) -> None:
    from .closed_loop import concat_affinity

    rows = concat_affinity(list(input.affinity), output.affinity)
    with open(log[0], "w") as fh:
        print(f"{len(input.affinity)} files, {rows} rows", file=fh)


def candidates_job(input, output, params, log) -> None:
    from .closed_loop import candidates_job as decide

    decide(input, output, params, log)


def estimates_job(input, output, params, log) -> None:
    from .closed_loop import estimates_report

    estimates_report(input.metrics, list(input.candidates), output.table, output.summary)
    with open(log[0], "w") as fh:
        print(f"estimates vs measured for {len(input.candidates)} method(s)", file=fh)
