"""A fresh install's smoke run: one short generation-only run of a harness's SIUO tasks, then
``siuo-eval judge --dry-run`` reading what it wrote.

``python -m tests.helpers.smoke_run HARNESS`` from the repository root, with the interpreter of
the environment under test (``scripts/check_install.py`` runs it in each fresh venv it makes).
Needs nothing but that environment: the model under test is the harness's API model class
against the loopback model server, the data are 9 real items with generated images. Exits 0
when the harness ran, wrote its files and ``siuo-eval`` read every response; else 1 with the
harness's output.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.helpers.fixture_data import per_category, real_items, write_data_dir
from tests.helpers.harness_cli import HARNESSES, harness_command, offline_env
from tests.helpers.model_server import ModelServer

TASKS = ("siuo_gen", "siuo_mcq")
ITEMS_PER_CATEGORY = 1
# The model class of README's main job (lmms-eval's Qwen2.5-VL): its weights cannot be had
# offline, but its module must import (it imports decord at the top).
README_MODEL_MODULE = "lmms_eval.models.simple.qwen2_5_vl"


def smoke(harness: str, root: Path) -> list[str]:
    """Run the harness; the problems found (none: it works)."""
    gen, _ = real_items()
    data = write_data_dir(root / "data", per_category(gen, ITEMS_PER_CATEGORY))
    items = 9 * ITEMS_PER_CATEGORY
    out = root / "out"
    with ModelServer(per_settings=True) as model:
        command = harness_command(harness, model.base_url, out, generation_only=True, tasks=TASKS)
        env = offline_env(data, root, model.base_url)
        # Everything the run and siuo-eval cache stays in this run's folder, not the user's HOME.
        env.update(XDG_CACHE_HOME=str(root / "cache"), MPLCONFIGDIR=str(root / "mpl"))
        proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=root, timeout=900)
        empty = model.empty_replies  # an empty response is not judged
    shown = f"$ {' '.join(command)}\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    if proc.returncode != 0:
        return [f"{harness} exited {proc.returncode}:\n{shown}"]
    siuo_eval = [str(Path(sys.executable).parent / "siuo-eval"), "judge", str(out)]
    bill = subprocess.run(
        [*siuo_eval, "--output", str(root / "judged"), "--dry-run"], env=env, capture_output=True, text=True
    )
    # A safety and an effectiveness request for each of siuo_gen's 3 responses per item.
    requests = 2 * (3 * items - empty)
    total = re.search(r"^TOTAL\s+(\d+)", bill.stdout, re.MULTILINE)
    if bill.returncode != 0 or total is None or int(total.group(1)) != requests:
        return [f"siuo-eval judge --dry-run did not plan {requests} judge requests for {harness}'s run:\n"
                f"{bill.stdout}\n{bill.stderr}\n--- the harness's run ---\n{shown}"]  # fmt: skip
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("harness", choices=HARNESSES)
    args = parser.parse_args()
    problems = []
    if args.harness == "lmms-eval":
        command = [sys.executable, "-c", f"import {README_MODEL_MODULE}"]
        imported = subprocess.run(command, capture_output=True, text=True)
        if imported.returncode != 0:
            problems.append(f"README's main job cannot load its model ({README_MODEL_MODULE}):\n{imported.stderr}")
    with tempfile.TemporaryDirectory(prefix=f"siuo-smoke-{args.harness}-") as tmp:
        problems += smoke(args.harness, Path(tmp))
    for problem in problems:
        print(f"FAIL {args.harness}: {problem}", file=sys.stderr)
    if not problems:
        print(f"ok {args.harness}: a generation-only run of {', '.join(TASKS)}, read by siuo-eval judge --dry-run")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
