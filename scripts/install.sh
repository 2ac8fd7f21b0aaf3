#!/usr/bin/env bash
# Creates (or reuses) a virtual environment with siuo-task, lmms-eval, VLMEvalKit (ms-vlmeval),
# Inspect (inspect-ai), lm-evaluation-harness (lm-eval[hf]) and the test tools, all in one environment.
# Usage: bash scripts/install.sh [VENV_DIR]   (default: .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
# -qq: pip's warnings (such as the "Location ... is ignored" lines of an index folder lacking a
# package, or setuptools' note on editable installs) would bury the test run's output; errors,
# and a failing install's exit status, still come through.
pip_install=(python -m pip install -qq)
"${pip_install[@]}" --upgrade pip
# torch and torchvision are pinned as a matching pair: VLMEvalKit imports torchvision, and the
# x86_64 torchvision on PyPI only loads beside the torch build it was made for (a CPU torch
# raises "operator torchvision::nms does not exist"). Both run on the CPU.
pins=("torch==2.14.1" "torchvision==0.29.1")
"${pip_install[@]}" "${pins[@]}"
# Every other bound lives in pyproject.toml (what `pip install -e .` gives a user too); this
# script only chooses the torch build and adds the test tools (the dev extra).
"${pip_install[@]}" -e ".[dev,vlmeval,inspect,lm-eval]" "${pins[@]}"
# The filter drops the ERROR line that `import vlmeval` logs when its optional .env file of API
# keys is absent (as siuo_task.adapters.vlmevalkit.__main__ does).
python -c "
import logging
logging.getLogger().addFilter(lambda record: not str(record.msg).startswith('Did not detect the .env file'))
import siuo_task, lmms_eval.evaluator, vlmeval, inspect_ai, lm_eval
print('siuo-task', siuo_task.__version__, 'installed in $venv')"
