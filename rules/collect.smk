rule collect:
    input:
        metrics=first_stage_files(),
        decided=decided_network_files,
    output:
        parquet=f"{RESULTS}/metrics.parquet",
        duckdb=f"{RESULTS}/sweep.duckdb",
        networks=f"{RESULTS}/networks.parquet",
    log:
        f"{RESULTS}/logs/collect.log",
    resources:
        mem_mb=2000,
        runtime=10,
    run:
        collect_job(input, output, params, log, threads)
