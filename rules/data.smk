rule split:
    output:
        split=f"{RESULTS}/split.parquet",
    log:
        f"{RESULTS}/logs/split.log",
    params:
        # Only what determines the rows (a table: its row count): adding a task or a target
        # column must not rewrite the split (a newer split file would retrain every network).
        dataset=lambda w: split_params(config["dataset"]),
        split=config["split"],
    run:
        split_job(input, output, params, log, threads)
