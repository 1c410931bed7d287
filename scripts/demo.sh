#!/usr/bin/env bash
# The demo: install, then the full default sweep on the built-in Tox21 data (12 tasks, singles
# at two sizes, all pairs and triples, the all-in-one network), then the budgeted grouping.
# Extra arguments go to snakemake (e.g. --cores 4, --dry-run, --configfile F).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
VENV=${TASKGROUP_VENV:-.venv}

# What the run was asked to do, for the last lines: a dry run (-n, --dry-run, or -n among
# combined short flags such as -np) and the config files given (for results_dir).
dry=false
configfiles=()
taking=false
for arg in "$@"; do
  if $taking && [[ $arg != -* ]]; then
    configfiles+=("$arg")
    continue
  fi
  taking=false
  case "$arg" in
    --dry-run | --dryrun) dry=true ;;
    --configfile | --configfiles) taking=true ;;
    --*) ;;
    -*n*) dry=true ;;
  esac
done

"$VENV/bin/snakemake" "$@"
# The effective config's results_dir: ./config.yaml with the given files merged over it.
results=$("$VENV/bin/python" -c '
import sys
from pipeline.config import load_config_file
print(load_config_file(sys.argv[1:] or "config.yaml", check_data=False)["results_dir"])
' "${configfiles[@]}")
echo
if $dry; then
  echo "Dry run: nothing was trained or written; the jobs listed above are what"
  echo "bash scripts/demo.sh would run without --dry-run (results into $results/)."
else
  echo "Done. Results in $results/: metrics.parquet (every network x task x split x epoch),"
  echo "sweep.duckdb, groupings.parquet, summary.md; try:"
  echo "  $VENV/bin/taskgroup query pairwise_gain --split test --results $results"
fi
