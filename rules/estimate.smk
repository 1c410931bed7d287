# Estimating strategies (sweep.strategy tag | pairs): a first stage estimates how tasks affect
# each other, a checkpoint decides which groups to train, and only those are trained for real
# (by rule train) before the exact solve over measured results.


if STRATEGY == "tag":

    # TAG: the all-in-one network trained once per method and seed, recording inter-task
    # affinity. Its metrics file is the all-in-one network's: recording never changes training.
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
            tag=tag_settings(),
            checkpoint=f"{RESULTS}/checkpoints/estimate/{{architecture}}-{{weighting}}/seed{{seed}}.pt",
            inprocess_entry="pipeline.jobs:train_job",
        run:
            train_job(input, output, params, log, threads)

    ruleorder: estimate_affinity > train

    rule affinity:
        input:
            affinity=[
                f"{RESULTS}/affinity/{method}/seed{seed}.parquet"
                for method in METHODS
                for seed in SEEDS
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


if ESTIMATES:

    checkpoint candidates:
        input:
            unpack(candidate_inputs),
        output:
            candidates=f"{RESULTS}/candidates/{{architecture}}-{{weighting}}.json",
        log:
            f"{RESULTS}/logs/candidates/{{architecture}}-{{weighting}}.log",
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            strategy=STRATEGY,
            tasks=TASKS,
            budgets=config["selection"]["budgets"],
            selection=config["selection"],
            method=lambda w: f"{w.architecture}-{w.weighting}",
        run:
            candidates_job(input, output, params, log)

    # Each candidate's estimated benefit next to its measured one.
    rule estimates:
        input:
            metrics=rules.collect.output.parquet,
            candidates=[candidates_file(method) for method in METHODS],
        output:
            table=f"{RESULTS}/estimates.parquet",
            summary=report(
                f"{RESULTS}/estimates.md",
                caption="../report/estimates.rst",
                category="Grouping",
            ),
        log:
            f"{RESULTS}/logs/estimates.log",
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            strategy=STRATEGY,
        run:
            estimates_job(input, output, params, log)
