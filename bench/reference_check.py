"""Bitwise reference check for refactors of the training loop: train a few small networks of
every architecture x weighting and save their METRICS tables (without the run-dependent
columns); ``--compare`` checks a fresh run against a saved one, value for value.

    python bench/reference_check.py --save /tmp/ref.parquet      # before a change
    python bench/reference_check.py --compare /tmp/ref.parquet   # after it
"""

from __future__ import annotations

import argparse
import sys

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import resolve_config
from pipeline.datasets import load_dataset
from pipeline.split import make_split
from pipeline.sweep import network_spec
from pipeline.training import resolve_device, train_network

DROP = ["wall_time_s", "versions", "device"]


def tables() -> pa.Table:
    config = resolve_config({
        "dataset": {"name": "synthetic", "rows": 600, "features": 32, "clusters": 2,
                    "tasks_per_cluster": 2, "missing_fraction": 0.2},
        "model": {"hidden": [32, 32]},
        "training": {"epochs": 3, "batch_size": 64},
    })  # fmt: skip
    data = load_dataset(config["dataset"])
    labels = make_split(data.n_rows, config["split"]["fractions"], 0)
    out = []
    for arch in ("hard_sharing", "mtan", "adashare"):
        for weighting in ("equal", "uncertainty", "dwa", "gradnorm"):
            for tasks, size in ((("c0t0",), "half"), (("c0t0", "c1t0"), "full")):
                spec = network_spec(config, tasks, size, 0, arch, weighting)
                out.append(train_network(data, labels, spec, resolve_device()).drop(DROP))
    return pa.concat_tables(out)


def main() -> int:
    parser = argparse.ArgumentParser()
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--save")
    group.add_argument("--compare")
    args = parser.parse_args()
    table = tables()
    if args.save:
        pq.write_table(table, args.save)
        print(f"saved {table.num_rows} rows")
        return 0
    ref = pq.read_table(args.compare)
    same = ref.equals(table)
    print(f"{table.num_rows} rows; bitwise identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
