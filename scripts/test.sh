#!/usr/bin/env bash
# The tests: install, then pytest (real Snakemake, real DuckDB; the SLURM tests start a local
# single-node SLURM through scripts/slurm-local.sh when run as root). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
VENV=${TASKGROUP_VENV:-.venv}
# --durations: the slowest tests in every log, so CI time creep is visible.
exec "$VENV/bin/python" -m pytest -q --durations=15 "$@"
