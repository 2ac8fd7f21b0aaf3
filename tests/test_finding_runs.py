"""One way to find runs: `siuo-eval judge` and `report` pick the same rerun (the newer harness
stamp, whatever the files' mtimes) under the same name, and the judge-later workflow (lmms-eval
--predict_only, then `siuo-eval judge`, then `report judged/ out/`) gives one run per model.

The outputs come from a real generation-only lmms-eval run (its dummy model), copied as a
rerun under an older stamp the way a user's `cp -r` or `rsync` would leave it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli_runs import clean_env, judge_env, siuo_eval
from tests.helpers.judge_server import JudgeServer

pytestmark = pytest.mark.slow

OLDER = "20261201_000000"


@pytest.fixture(scope="module")
def twice(small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An lmms-eval output folder holding one model run twice: the real run, and a copy of it
    under an older stamp whose files were written later (newer mtimes)."""
    root = tmp_path_factory.mktemp("twice")
    out = root / "out"
    env = clean_env(small_data_dir, HF_HOME=str(root / "hf"), HF_HUB_OFFLINE="1")
    env.update(HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "lmms_eval", "--model", "dummy", "--model_args", "response=The answer is (A)."]
    command += ["--tasks", "siuo_gen_greedy,siuo_mcq", "--output_path", str(out), "--log_samples", "--predict_only"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    (results,) = out.rglob("*_results.json")
    newer = results.name.removesuffix("_results.json")
    assert proc.returncode == 0 and newer > OLDER, proc.stderr[-3000:]
    for file in sorted(results.parent.glob(f"{newer}_*")):
        os.utime(file, (1_000_000_000, 1_000_000_000))  # the newer run's files look old
        shutil.copy(file, file.with_name(file.name.replace(newer, OLDER)))  # the older run's look new
    return {"out": out, "folder": results.parent, "newer": Path(newer)}


def test_judge_and_report_pick_the_newer_stamp_under_one_name(
    twice: dict[str, Path], small_data_dir: Path, tmp_path: Path
) -> None:
    folder, newer = twice["folder"], str(twice["newer"])
    with JudgeServer(declines=False) as server:
        env = judge_env(small_data_dir, server.base_url, tmp_path / "cache.sqlite3")
        judged = siuo_eval("judge", twice["out"], "--output", tmp_path / "judged", env=env)
    assert judged.returncode == 0, judged.stderr
    picked = folder / f"{newer}_samples_siuo_gen_greedy.jsonl"
    older = folder / f"{OLDER}_samples_siuo_gen_greedy.jsonl"
    assert f"run dummy-greedy: {picked} (" in judged.stderr
    assert f"siuo-eval: note: '{older}' left out: an older run of dummy-greedy" in judged.stderr
    assert json.loads((tmp_path / "judged" / "dummy-greedy" / "results.json").read_text())["input"] == str(picked)

    report = siuo_eval("report", tmp_path / "judged", twice["out"], "--output", tmp_path / "report", env=env)
    assert report.returncode == 0, report.stderr
    # One run for the model: the newer stamp's results joined with its judging, under the judge's name.
    (read,) = [line for line in report.stdout.splitlines() if line.startswith("read ")]
    assert read.startswith("read dummy-greedy (1 response/item)")
    assert f"{folder / f'{newer}_results.json'}, {tmp_path / 'judged' / 'dummy-greedy' / 'results.json'}" in read
    assert f"'{folder / f'{OLDER}_results.json'}' left out: an older run of dummy" in report.stderr
    assert "--log_samples" not in report.stderr and "generation only" not in report.stderr
    header, *rows = _headline_table((tmp_path / "report" / "report.md").read_text())
    (row,) = rows
    assert row[0].startswith("dummy-greedy")
    safe, accuracy = row[header.index("Safe")], row[header.index("MCQ accuracy")]
    assert re.match(r"\d+\.\d \[", safe) and re.match(r"\d+\.\d \[", accuracy), row


def test_a_generation_only_run_on_its_own_says_to_judge_it_first(
    twice: dict[str, Path], small_data_dir: Path, tmp_path: Path
) -> None:
    env = clean_env(small_data_dir)
    report = siuo_eval("report", twice["out"], "--output", tmp_path / "report", env=env)
    assert report.returncode == 0, report.stderr
    samples = twice["folder"] / f"{twice['newer']}_samples_siuo_gen_greedy.jsonl"
    assert f"'{samples}' generation only: run `siuo-eval judge` first" in report.stderr
    assert "--log_samples" not in report.stderr
    (read,) = [line for line in report.stdout.splitlines() if line.startswith("read ")]
    assert read.startswith("read dummy (PARTIAL")  # the multiple-choice part, named as such
    review = siuo_eval("export-review", twice["out"], "--output", tmp_path / "review.csv", env=env)
    assert review.returncode == 2 and "generation only: run `siuo-eval judge` first" in review.stderr


def _headline_table(markdown: str) -> list[list[str]]:
    """The header and rows of report.md's headline table."""
    lines = markdown.splitlines()
    start = lines.index("## Headline results")
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|") and not line.startswith("|---"):
            table.append([cell.strip() for cell in line.strip("|").split("|")])
    return table
