# The budgeted grouping solve (Standley et al. 2020): which networks to deploy per budget.


rule select:
    input:
        metrics=rules.collect.output.parquet,
        # An estimating strategy's decided groups and controls: the control's pool.
        groups=[groups_file(method) for method in METHODS] if ESTIMATES else [],
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
        tasks=TASKS,
        strategy={
            "name": STRATEGY.name,
            "estimates": STRATEGY.estimates,
            "estimate": STRATEGY.estimate_description,
            "trains_pairs": STRATEGY.trains_pairs,
        },
    run:
        select_job(input, output, params, log, threads)
