#!/usr/bin/env bash
# Creates (or reuses) a virtual environment with siuo-task, lmms-eval and the test tools,
# on a CPU-only machine. Usage: bash scripts/install.sh [VENV_DIR]   (default: .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install --quiet --upgrade pip
# CPU torch first: a bare `pip install lmms-eval` resolves a CUDA build of several GB.
python -m pip install --quiet "torch==2.13.0"
# torchvision pinned to the release that matches torch 2.13 so the resolver keeps CPU torch;
# filelock<4 because lmms-eval imports filelock._api; decord for lmms-eval's llava_hf.
python -m pip install --quiet -e ".[dev]" "torch==2.13.0" "torchvision==0.28.0" "filelock<4" decord
# PyPI's torchvision is a CUDA build that cannot load beside CPU torch ("operator
# torchvision::nms does not exist"); without it transformers uses its PIL image processors.
python -m pip uninstall --quiet -y torchvision
python -c "import siuo_task, lmms_eval.evaluator; print('siuo-task', siuo_task.__version__, 'installed in $venv')"
