#!/usr/bin/env bash
# The demo: install, then the full default sweep on the built-in Tox21 data (12 tasks, singles
# at two sizes, all pairs and triples, the all-in-one network), then the budgeted grouping.
# Extra arguments go to snakemake (e.g. --cores 4, --dry-run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
VENV=${TASKGROUP_VENV:-.venv}
"$VENV/bin/snakemake" "$@"
echo
echo "Done. Results in results/: metrics.parquet (every network x task x split x epoch),"
echo "sweep.duckdb; try: $VENV/bin/taskgroup query pairwise_gain --split test"
