"""One way to find runs: `siuo-eval judge` and `report` pick the same rerun (the newer harness
stamp, whatever the files' mtimes) under the same name, and the judge-later workflow (lmms-eval
--predict_only, then `siuo-eval judge`, then `report judged/ out/`) gives one run per model.

The lmms-eval outputs come from a real generation-only run (its dummy model), copied as a rerun
under an older stamp the way a user's `cp -r` or `rsync` would leave it; lm-eval's and
VLMEvalKit's are files in the layout those harnesses write."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli_runs import clean_env, judge_env
from tests.helpers.harness_cli import hubs_offline
from tests.helpers.in_process import siuo_eval_in_process
from tests.helpers.judge_server import JudgeServer

OLDER = "20261201_000000"


@pytest.fixture(scope="module")
def twice(small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An lmms-eval output folder holding one model run twice: the real run, and a copy of it
    under an older stamp whose files were written later (newer mtimes)."""
    root = tmp_path_factory.mktemp("twice")
    out = root / "out"
    env = clean_env(small_data_dir, **hubs_offline(root / "hf"), TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
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


@pytest.mark.slow
def test_judge_and_report_pick_the_newer_stamp_under_one_name(
    twice: dict[str, Path], small_data_dir: Path, tmp_path: Path
) -> None:
    folder, newer = twice["folder"], str(twice["newer"])
    with JudgeServer(declines=False) as server:
        env = judge_env(small_data_dir, server.base_url, tmp_path / "cache.sqlite3")
        judged = siuo_eval_in_process("judge", twice["out"], "--output", tmp_path / "judged", env=env)
    assert judged.returncode == 0, judged.stderr
    picked = folder / f"{newer}_samples_siuo_gen_greedy.jsonl"
    older = folder / f"{OLDER}_samples_siuo_gen_greedy.jsonl"
    assert f"run dummy-greedy: {picked} (" in judged.stderr
    assert f"siuo-eval: note: '{older}' left out: an older run of dummy-greedy" in judged.stderr
    assert json.loads((tmp_path / "judged" / "dummy-greedy" / "results.json").read_text())["input"] == str(picked)

    report = siuo_eval_in_process("report", tmp_path / "judged", twice["out"], "--output", tmp_path / "report", env=env)
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


@pytest.mark.slow
def test_a_generation_only_run_on_its_own_says_to_judge_it_first(
    twice: dict[str, Path], small_data_dir: Path, tmp_path: Path
) -> None:
    env = clean_env(small_data_dir)
    report = siuo_eval_in_process("report", twice["out"], "--output", tmp_path / "report", env=env)
    assert report.returncode == 0, report.stderr
    samples = twice["folder"] / f"{twice['newer']}_samples_siuo_gen_greedy.jsonl"
    assert f"'{samples}' generation only: run `siuo-eval judge` first" in report.stderr
    assert "--log_samples" not in report.stderr
    (read,) = [line for line in report.stdout.splitlines() if line.startswith("read ")]
    assert read.startswith("read dummy (PARTIAL")  # the multiple-choice part, named as such
    review = siuo_eval_in_process("export-review", twice["out"], "--output", tmp_path / "review.csv", env=env)
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


def test_lm_eval_reruns_by_the_stamp_in_their_file_names(small_data_dir: Path, tmp_path: Path) -> None:
    """lm-eval's `results_<ISO time>.json` / `samples_<task>_<ISO time>.jsonl`, in its layout:
    the later time wins in `judge` and `report` although its files are older on disk."""
    from tests.helpers.fixture_data import per_category, real_items

    gen, _ = real_items()
    keep = set(per_category(gen, 2))
    folder = tmp_path / "out" / "__models__tiny"
    folder.mkdir(parents=True)
    stamps = {"2026-12-01T09-00-00.000001": 1_900_000_000, "2026-12-02T09-00-00.000001": 1_000_000_000}
    for stamp, mtime in stamps.items():
        lines = [
            {"doc_id": n, "doc": item, "target": item["reference_answer"], "filtered_resps": [f"reply {stamp}"]}
            for n, item in enumerate(item for item in gen if item["question_id"] in keep)
        ]
        samples = folder / f"samples_siuo_gen_greedy_{stamp}.jsonl"
        samples.write_text("".join(json.dumps(line) + "\n" for line in lines))
        results = {
            "results": {
                "siuo_gen_greedy": {"alias": "siuo_gen_greedy", "bypass,none": 999},
                "siuo_mcq": {"alias": "siuo_mcq", "accuracy,none": 50.0, "unparsed_rate,none": 0.0},
            },
            "n-samples": {task: {"original": 18, "effective": 18} for task in ("siuo_gen_greedy", "siuo_mcq")},
            "config": {"model": "hf-multimodal", "model_args": "pretrained=/models/tiny"},
        }
        (folder / f"results_{stamp}.json").write_text(json.dumps(results))
        for file in folder.glob(f"*{stamp}*"):
            os.utime(file, (mtime, mtime))
    older, newer = sorted(stamps)
    env = clean_env(small_data_dir, SIUO_JUDGE_CACHE="off")
    dry = siuo_eval_in_process("judge", tmp_path / "out", "--output", tmp_path / "judged", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert f"run tiny-greedy: {folder / f'samples_siuo_gen_greedy_{newer}.jsonl'} (" in dry.stderr
    assert f"'{folder / f'samples_siuo_gen_greedy_{older}.jsonl'}' left out: an older run of tiny-greedy" in dry.stderr
    report = siuo_eval_in_process("report", tmp_path / "out", "--output", tmp_path / "report", env=env)
    assert report.returncode == 0, report.stderr
    (read,) = [line for line in report.stdout.splitlines() if line.startswith("read ")]
    assert read.startswith("read tiny (") and str(folder / f"results_{newer}.json") in read
    assert f"'{folder / f'results_{older}.json'}' left out: an older run of tiny" in report.stderr
    assert "generation only: run `siuo-eval judge` first" in report.stderr


def test_vlmevalkit_judged_later_joins_the_multiple_choice_run_beside_it(small_data_dir: Path, tmp_path: Path) -> None:
    """VLMEvalKit writes nothing for `--mode infer` open-ended predictions: judged later, they
    join the multiple-choice results its evaluation wrote beside them in the same run folder."""
    import pandas as pd

    from siuo_task.vlmeval import GEN_PAPER, MCQ
    from tests.helpers.cli_runs import authors_rows

    folder = tmp_path / "outputs" / "Qwen2-VL-2B" / "T20261201-120000"
    folder.mkdir(parents=True)
    rows = authors_rows()
    predictions = [
        {"index": row["question_id"] * 10 + n, "question_id": row["question_id"], "repeat": n, "prediction": text}
        for row in rows
        for n, text in enumerate(row["responses"])
    ]
    pd.DataFrame(predictions).to_excel(folder / f"Qwen2-VL-2B_{GEN_PAPER}.xlsx", index=False)
    mcq = {"accuracy": 61.1, "accuracy_ci95": [38.6, 79.7], "unparsed_rate": 0.0, "n_items": 18, "task": "siuo_mcq"}
    (folder / f"Qwen2-VL-2B_{MCQ}_siuo_results.json").write_text(json.dumps(mcq))
    with JudgeServer(declines=False) as server:
        env = judge_env(small_data_dir, server.base_url, "off")
        judged = siuo_eval_in_process("judge", tmp_path / "outputs", "--output", tmp_path / "judged", env=env)
    assert judged.returncode == 0, judged.stderr
    report = siuo_eval_in_process(
        "report", tmp_path / "judged", tmp_path / "outputs", "--output", tmp_path / "report", env=env
    )
    assert report.returncode == 0, report.stderr
    header, *table = _headline_table((tmp_path / "report" / "report.md").read_text())
    (row,) = table
    assert row[0].startswith("Qwen2-VL-2B (") and row[header.index("MCQ accuracy")].startswith("61.1 [")
    assert re.match(r"\d+\.\d \[", row[header.index("Safe")]), row
