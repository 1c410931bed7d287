rule split:
    output:
        split=f"{RESULTS}/split.parquet",
    log:
        f"{RESULTS}/logs/split.log",
    params:
        # Only what determines the rows: adding a task must not reshuffle the split.
        dataset=loader_config(config["dataset"]),
        split=config["split"],
    run:
        split_job(input, output, params, log, threads)
