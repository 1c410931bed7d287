rule train:
    input:
        split=rules.split.output.split,
    output:
        metrics=f"{RESULTS}/runs/{{architecture}}-{{weighting}}/seed{{seed}}/{{size}}/{{stem}}.parquet",
        # Each labelled test value's final loss (schema TEST_LOSSES): the bootstrap's input.
        samples=f"{RESULTS}/samples/{{architecture}}-{{weighting}}/seed{{seed}}/{{size}}/{{stem}}.parquet",
    log:
        f"{RESULTS}/logs/train/{{architecture}}-{{weighting}}/seed{{seed}}/{{size}}/{{stem}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{architecture}}-{{weighting}}/seed{{seed}}/{{size}}/{{stem}}.tsv"
    threads: 1
    resources:
        mem_mb=1500,
        runtime=30,
    params:
        spec=train_spec,
        # Not an output: Snakemake deletes outputs of a failed job; a checkpoint must survive.
        checkpoint=f"{RESULTS}/checkpoints/{{architecture}}-{{weighting}}/seed{{seed}}/{{size}}/{{stem}}.pt",
        # The Dask executor calls this in a warm worker instead of spawning a job process.
        inprocess_entry="pipeline.jobs:train_job",
    run:
        # training.pack is passed here, not in params: it must never retrain a network.
        train_job(
            input,
            output,
            params,
            log,
            threads,
            pending_trainings,
            config["training"]["pack"],
        )
