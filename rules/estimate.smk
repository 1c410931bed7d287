# Estimating strategies (pipeline/strategies/; STRATEGY.estimates): a first stage estimates how
# tasks affect each other, a checkpoint decides which groups to train, and only those are
# trained for real (by rule train) before the exact solve over measured results.


if STRATEGY.estimation == "recorded":

    # The estimate is recorded while the all-in-one network trains (TAG's lookahead), once per
    # method and seed. Its metrics file is the all-in-one network's: recording never changes
    # training.
    rule estimate_affinity:
        input:
            split=rules.split.output.split,
        output:
            metrics=f"{RESULTS}/runs/{{architecture}}-{{weighting}}/seed{{seed}}/full/{ALL_IN_ONE.stem}.parquet",
            affinity=f"{RESULTS}/affinity/{{architecture}}-{{weighting}}/seed{{seed}}.parquet",
        log:
            f"{RESULTS}/logs/estimate/{{architecture}}-{{weighting}}/seed{{seed}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/estimate/{{architecture}}-{{weighting}}/seed{{seed}}.tsv"
        # First among the ready jobs: the checkpoint waits for it, the singles do not.
        priority: 10
        threads: 1
        resources:
            mem_mb=4000,
            runtime=60,
        params:
            spec=lambda w: network_spec(
                config,
                ALL_IN_ONE.tasks,
                "full",
                int(w.seed),
                w.architecture,
                w.weighting,
            ),
            tag=STRATEGY.recording_params(config),
            checkpoint=f"{RESULTS}/checkpoints/estimate/{{architecture}}-{{weighting}}/seed{{seed}}.pt",
            inprocess_entry="pipeline.training:run_snakemake_job",
        run:
            train_job(input, output, params, log, threads)

    ruleorder: estimate_affinity > train

    rule affinity:
        input:
            affinity=[
                estimate_file(method, seed) for method in METHODS for seed in SEEDS
            ],
        output:
            affinity=f"{RESULTS}/affinity.parquet",
        log:
            f"{RESULTS}/logs/affinity.log",
        resources:
            mem_mb=4000,
            runtime=10,
        run:
            affinity_job(input, output, params, log)


if STRATEGY.estimation == "job":

    # The strategy's own estimation job, per method and seed, after the first-stage files it
    # names (e.g. the all-in-one network's).
    rule estimate:
        input:
            unpack(estimate_inputs),
        output:
            estimate=f"{RESULTS}/estimate/{{architecture}}-{{weighting}}/seed{{seed}}.parquet",
        log:
            f"{RESULTS}/logs/estimate/{{architecture}}-{{weighting}}/seed{{seed}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/estimate/{{architecture}}-{{weighting}}/seed{{seed}}.tsv"
        priority: 10
        threads: 1
        resources:
            mem_mb=4000,
            runtime=60,
        params:
            sweep={"strategy": STRATEGY.name, STRATEGY.name: STRATEGY.options},
            settings=STRATEGY.estimate_params(config),
        run:
            estimate_job(input, output, params, log)


if ESTIMATES:

    checkpoint groups:
        input:
            unpack(group_inputs),
        output:
            groups=f"{RESULTS}/groups/{{architecture}}-{{weighting}}.json",
        log:
            f"{RESULTS}/logs/groups/{{architecture}}-{{weighting}}.log",
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            # The whole sweep: the controls avoid the first stage's networks.
            sweep=config["sweep"],
            tasks=TASKS,
            selection=config["selection"],
            method=lambda w: f"{w.architecture}-{w.weighting}",
        run:
            groups_job(input, output, params, log)

    # Each decided group's estimated benefit next to its measured one, and the picture of
    # the first training method's estimate.
    rule estimates:
        input:
            unpack(picture_inputs),
            metrics=rules.collect.output.parquet,
            groups=[groups_file(method) for method in METHODS],
        output:
            table=f"{RESULTS}/estimates.parquet",
            summary=report(
                f"{RESULTS}/estimates.md",
                caption="../report/estimates.rst",
                category="Grouping",
            ),
            picture=report(
                f"{RESULTS}/estimate_matrix.png",
                caption="../report/estimate_matrix.rst",
                category="Grouping",
            ),
        log:
            f"{RESULTS}/logs/estimates.log",
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            strategy=STRATEGY.name,
        run:
            estimates_job(input, output, params, log)
