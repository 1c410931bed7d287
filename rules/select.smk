# The budgeted grouping solve (Standley et al. 2020): which networks to deploy per budget.


rule select:
    input:
        metrics=rules.collect.output.parquet,
    output:
        groupings=f"{RESULTS}/groupings.parquet",
        plot=report(
            f"{RESULTS}/budget_curve.png",
            caption="../report/budget_curve.rst",
            category="Grouping",
        ),
        summary=report(
            f"{RESULTS}/summary.md",
            caption="../report/summary.rst",
            category="Grouping",
        ),
    log:
        f"{RESULTS}/logs/select.log",
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        selection=config["selection"],
        # A function: Snakemake formats plain string params as wildcard patterns, and a
        # task name may hold braces ('digit in {1,7}').
        tasks=lambda w: TASKS,
    run:
        select_job(input, output, params, log, threads)
