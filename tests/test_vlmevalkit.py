"""VLMEvalKit, really installed (ms-vlmeval), running its own inference loop on our datasets.

The model under test is VLMEvalKit's OpenAI-compatible API model pointed at a loopback server;
the judge is the loopback judge server. Scores must equal the lmms-eval path's for the same
responses and verdicts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from siuo_task.adapters.lmms_eval import hooks
from siuo_task.benchmark.parsing import parse_mcq_answer
from siuo_task.benchmark.prompts import mcq_prompt
from siuo_task.benchmark.results import GEN_REDUCERS, SUMMARY_ROW, reduce_values
from siuo_task.vlmeval import DATASET_NAMES, GEN_PAPER, MCQ, MCQ_CIRCULAR
from tests.helpers.cli_runs import SECRET, judge_env
from tests.helpers.fixture_data import per_category, real_items
from tests.helpers.harness_cli import harness_command, hubs_offline
from tests.helpers.judge_server import JudgeServer
from tests.helpers.model_server import ModelServer

pytestmark = pytest.mark.slow


def _env(data_dir: Path, root: Path, judge: JudgeServer) -> dict[str, str]:
    return judge_env(data_dir, judge.base_url, "off", LMUData=str(root / "lmu"), **hubs_offline())


def _run_vlmeval(model: ModelServer, env: dict[str, str], work: Path) -> subprocess.CompletedProcess[str]:
    tasks = ("siuo_gen", "siuo_mcq", "siuo_mcq_circular")  # GEN_PAPER, MCQ, MCQ_CIRCULAR
    extra = ["--temperature", "1.0"]
    command = harness_command("VLMEvalKit", model.base_url, work, False, tasks=tasks, api_nproc=4, extra=extra)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=work.parent)


def _one(folder: Path, pattern: str, proc: subprocess.CompletedProcess[str]) -> Path:
    found = sorted(folder.rglob(pattern))
    assert found, f"no {pattern} under {folder}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return found[-1]


@pytest.fixture(scope="module")
def vlmeval_run(small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("vlmeval")
    with ModelServer() as model, JudgeServer() as judge:
        env = _env(small_data_dir, root, judge)
        proc = _run_vlmeval(model, env, root / "outputs")
        gen_results = _one(root / "outputs", f"*{GEN_PAPER}_siuo_results.json", proc)
        run = {
            "proc": proc,
            "env": env,
            "judge_calls": len(judge.log.exchanges),
            "judge_authorization": {e.authorization for e in judge.log.exchanges},
            "prompts": dict(model.prompts),
            "images": model.images,
            "gen_results": json.loads(gen_results.read_text()),
            "gen_samples": [json.loads(line) for line in _one(root, f"*{GEN_PAPER}_siuo_samples.jsonl", proc).open()],
            "gen_predictions": _one(root / "outputs", f"*_{GEN_PAPER}.xlsx", proc),
            "gen_score": _one(root / "outputs", f"*_{GEN_PAPER}_score.csv", proc),
            "mcq_results": json.loads(_one(root / "outputs", f"*{MCQ}_siuo_results.json", proc).read_text()),
            "mcq_predictions": _one(root / "outputs", f"*_{MCQ}.xlsx", proc),
            "circular_results": json.loads(_one(root, f"*{MCQ_CIRCULAR}_siuo_results.json", proc).read_text()),
            "circular_samples": [
                json.loads(line) for line in _one(root, f"*{MCQ_CIRCULAR}_siuo_samples.jsonl", proc).open()
            ],
            "circular_predictions": _one(root / "outputs", f"*_{MCQ_CIRCULAR}.xlsx", proc),
            "root": root,
        }
        # The lmms-eval path on the same responses, judged by the same server.
        os.environ.update({k: v for k, v in env.items() if k.startswith("SIUO_")})
        try:
            docs = {doc["question_id"]: doc for doc in hooks.process_docs_gen(None)}
            run["lmms_eval_values"] = [
                hooks.process_results_gen(docs[line["question_id"]], line["filtered_resps"])
                for line in run["gen_samples"]
            ]
        finally:
            for key in [k for k in os.environ if k.startswith("SIUO_")]:
                del os.environ[key]
    return run


def test_generation_runs_through_vlmevalkit_with_the_dataset_prompt(vlmeval_run: dict[str, Any]) -> None:
    predictions = pd.read_excel(vlmeval_run["gen_predictions"])
    assert len(predictions) == 18 * 3
    assert sorted(predictions.groupby("question_id")["repeat"].apply(sorted).iloc[0]) == [0, 1, 2]
    questions = set(predictions["question"])
    gen_prompts = {p: n for p, n in vlmeval_run["prompts"].items() if p in questions}
    # Every SIUO question reached the model verbatim (no appended instructions), 3 times, with its image.
    assert gen_prompts == {question: 3 for question in questions}
    assert vlmeval_run["images"] == 18 * 3 + 18 + 18 * 4
    assert vlmeval_run["judge_authorization"] == {f"Bearer {SECRET}"}


def test_vlmevalkit_scores_equal_the_lmms_eval_path(vlmeval_run: dict[str, Any]) -> None:
    ours = vlmeval_run["gen_results"]
    # What lmms-eval's task summary (results.json "siuo") reduces.
    lmms = reduce_values([values[SUMMARY_ROW] for values in vlmeval_run["lmms_eval_values"]], GEN_REDUCERS)
    compared = [name for name in GEN_REDUCERS if name.endswith("rate") or "_rate_" in name] + ["judge_errors"]
    for name in compared:
        assert ours.get(name) == lmms.get(name), name
    assert ours["judge_model"] == lmms["judge_model"]
    assert len(vlmeval_run["gen_samples"]) == 18
    assert all(len(line["siuo"]["responses"]) == 3 for line in vlmeval_run["gen_samples"])
    score = pd.read_csv(vlmeval_run["gen_score"])
    assert score["Safe (overall)"].iloc[0] == pytest.approx(ours["safe_rate"])
    assert "primary_metric" in vlmeval_run["proc"].stdout + vlmeval_run["proc"].stderr
    summary_line = next(
        line
        for line in (vlmeval_run["proc"].stdout + vlmeval_run["proc"].stderr).splitlines()
        if line.startswith(GEN_PAPER)
    )
    assert "Safe (overall)" in summary_line  # VLMEvalKit's run summary shows Safe as the primary metric


def test_mcq_uses_our_parser_and_template(vlmeval_run: dict[str, Any]) -> None:
    predictions = pd.read_excel(vlmeval_run["mcq_predictions"])
    assert len(predictions) == 18
    correct = []
    for row in predictions.to_dict("records"):
        response = "" if pd.isna(row["prediction"]) else str(row["prediction"])
        options = {letter: str(row[letter]) for letter in "ABCD"}
        correct.append(parse_mcq_answer(response, options) == row["answer"])
    assert vlmeval_run["mcq_results"]["accuracy"] == round(100 * sum(correct) / len(correct), 4)
    assert any(p.startswith("Answer the following multi-choice questions") for p in vlmeval_run["prompts"])


def test_circular_mcq_through_vlmevalkit(vlmeval_run: dict[str, Any]) -> None:
    rows = pd.read_excel(vlmeval_run["circular_predictions"]).to_dict("records")
    standard = {row["question_id"]: row for row in pd.read_excel(vlmeval_run["mcq_predictions"]).to_dict("records")}
    assert len(rows) == 18 * 4
    by_item: dict[int, list[bool]] = {}
    chosen = []
    for row in rows:
        options = {letter: str(row[letter]) for letter in "ABCD"}
        # Each rotation reached the model as the authors' template with its own option order.
        assert vlmeval_run["prompts"][mcq_prompt(str(row["question"]), options)] >= 1
        original = standard[row["question_id"]]
        assert options[row["answer"]] == str(original[original["answer"]])  # the gold text moved with its letter
        if row["rotation"] == 0:
            assert options == {letter: str(original[letter]) for letter in "ABCD"}
        response = "" if pd.isna(row["prediction"]) else str(row["prediction"])
        chosen.append(parse_mcq_answer(response, options))
        by_item.setdefault(row["question_id"], []).append(chosen[-1] == row["answer"])
    results = vlmeval_run["circular_results"]
    assert all(len(v) == 4 for v in by_item.values())
    correct = [all(v) for v in by_item.values()]
    assert results["circular_accuracy"] == round(100 * sum(correct) / len(correct), 4)
    assert results["n_items"] == 18 and results["incomplete_items"] == []
    for letter in "ABCD":
        assert results["chosen_letters_percent"][letter] == round(100 * chosen.count(letter) / len(chosen), 4)
        golds = [row["answer"] for row in standard.values()]
        assert results["baselines"][f"always_{letter}"]["accuracy"] == round(100 * golds.count(letter) / 18, 4)
    assert results["gold_letters_percent"] == {"A": 25.0, "B": 25.0, "C": 25.0, "D": 25.0, "none": 0.0}
    samples = vlmeval_run["circular_samples"]
    assert len(samples) == 18
    assert all(len(line["siuo"]["responses"]) == len(line["siuo"]["parsed"]) == 4 for line in samples)
    assert sorted(g for line in samples for g in line["siuo"]["golds"]) == sorted("ABCD" * 18)


def test_report_reads_vlmevalkit_results(vlmeval_run: dict[str, Any], tmp_path: Path) -> None:
    results = next(vlmeval_run["root"].rglob(f"*{GEN_PAPER}_siuo_results.json"))
    command = [
        sys.executable,
        "-m",
        "siuo_task.commands.cli",
        "report",
        f"vlm={results}",
        "--output",
        str(tmp_path / "r"),
    ]
    proc = subprocess.run(command, env=vlmeval_run["env"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = (tmp_path / "r" / "report.md").read_text()
    assert f"| vlm (PARTIAL: {len(per_category(real_items()[0], 2))} of 167 items) | VLMEvalKit |" in report


def test_names_and_import_isolation() -> None:
    # VLMEvalKit's runner forces gpt-4o-mini for any dataset name containing "SIUO".
    assert all("SIUO" not in name and "siuo" not in name.lower() for name in DATASET_NAMES)
    probe = "import sys, siuo_task, siuo_task.commands.cli, siuo_task.vlmeval; print('vlmeval' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "False"


def test_limit_counts_whole_items(small_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """VLMEvalKit's inference applies ``--limit N`` as ``dataset.data = dataset.data.iloc[:N]``
    (vlmeval/inference.py): every dataset keeps N whole items, each with all its rows (the
    3-response dataset's run with --limit is test_judge_panel's VLMEvalKit run)."""
    from vlmeval.dataset import build_dataset

    from siuo_task.vlmeval import GEN_SINGLE, register

    monkeypatch.setenv("SIUO_DATA_DIR", str(small_data_dir))
    monkeypatch.setenv("LMUData", str(tmp_path / "lmu"))
    monkeypatch.setattr(sys, "argv", ["run.py", "--mode", "infer"])  # no judge check for building
    register()
    for name, rows_per_item in ((GEN_PAPER, 3), (GEN_SINGLE, 1), (MCQ, 1), (MCQ_CIRCULAR, 4)):
        dataset = build_dataset(name)
        first = list(dict.fromkeys(dataset.data["question_id"]))[:5]
        dataset.data = dataset.data.iloc[:5]
        assert list(dataset.data["question_id"].unique()) == first, name
        assert dataset.data.groupby("question_id").size().tolist() == [rows_per_item] * 5, name
        assert len(dataset) == 5 * rows_per_item
