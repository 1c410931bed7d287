#!/usr/bin/env bash
# Set up .venv with taskgroup and everything it runs with. Idempotent: re-running after a
# change to pyproject.toml reinstalls, otherwise it returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${TASKGROUP_VENV:-.venv}
stamp="$VENV/.taskgroup-installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ -f "$stamp" ]; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# torch first and pinned: an unpinned torch pulls several GB of CUDA packages.
"$VENV/bin/pip" install --quiet --disable-pip-version-check "torch==2.13.0"
# compat editable mode: Snakemake finds executor plugins (the bundled Dask one) by module
# name, which the default import-hook editable install hides.
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e ".[test]" \
  --config-settings editable_mode=compat
rm -f "$VENV"/.taskgroup-installed-*
touch "$stamp"
