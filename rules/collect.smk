rule collect:
    input:
        metrics=all_network_files(),
    output:
        parquet=f"{RESULTS}/metrics.parquet",
        duckdb=f"{RESULTS}/sweep.duckdb",
    log:
        f"{RESULTS}/logs/collect.log",
    resources:
        mem_mb=2000,
        runtime=10,
    run:
        collect_job(input, output, params, log, threads)
