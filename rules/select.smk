# The budgeted grouping solve (Standley et al. 2020): which networks to deploy per budget.


rule select:
    input:
        metrics=rules.collect.output.parquet,
        # An estimating strategy's decided groups and controls: the control's pool.
        groups=[groups_file(method) for method in METHODS] if ESTIMATES else [],
        # Which file holds which network: the one-seed bootstrap reads the chosen networks'
        # per-sample test losses (results/samples/) through it, and no other.
        networks=rules.collect.output.networks,
        split=rules.split.output.split,
    output:
        groupings=f"{RESULTS}/groupings.parquet",
        gains=f"{RESULTS}/gains.parquet",
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
        strategy={
            "name": STRATEGY.name,
            "estimates": STRATEGY.estimates,
            "estimate": STRATEGY.estimate_description,
            "trains_pairs": STRATEGY.trains_pairs,
        },
    run:
        select_job(input, output, params, log, threads)
