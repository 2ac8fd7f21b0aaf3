#!/usr/bin/env bash
# The test command: installs what it needs, then lint + the whole test suite (CPU, offline).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SIUO_VENV:-.venv}"
bash scripts/install.sh "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
ruff check siuo_task tests scripts benchmarks
ruff format --check siuo_task tests scripts benchmarks
mypy siuo_task
# Whole modules per worker (--dist loadfile), so a module's shared harness run is made once.
python -m pytest -q -p no:cacheprovider -n 3 --dist loadfile "$@"
