"""Same responses and verdicts, same numbers, in all four harnesses.

The responses are fixed (the loopback model server's deterministic replies, 3 per item); the
verdicts come from the deterministic loopback judge (which also declines now and then, so judge
errors are part of the comparison). Each harness scores them its own way:

- Inspect: the real ``inspect eval siuo_task/siuo_gen`` CLI against the model server;
- lmms-eval and lm-eval: each harness's own task object, loaded from our task YAMLs by its own
  TaskManager, its ``process_results`` per document and its ``aggregation()`` functions;
- VLMEvalKit: our dataset class's ``evaluate`` on a predictions file holding the responses.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from siuo_task.adapters.inspect_ai.scoring import numeric_metrics
from siuo_task.benchmark.records import GenRecord
from siuo_task.benchmark.results import GEN_REDUCERS
from tests.helpers.harness_cli import harness_command, hubs_offline
from tests.helpers.judge_server import JudgeServer
from tests.helpers.model_server import ModelServer, reply_for

pytestmark = pytest.mark.slow

COMPARED = [name for name in GEN_REDUCERS if "rate" in name] + ["judge_errors", "judge_declines", "items_undecided"]


def _fixed_responses(data_dir: Path) -> dict[int, list[str]]:
    items = json.loads((data_dir / "siuo_gen.json").read_text(encoding="utf-8"))
    return {item["question_id"]: [reply_for(item["question"], k) for k in range(3)] for item in items}


def _by_harness_task(task: Any, results_for: Any) -> dict[str, Any]:
    """A harness task's own process_results per document, then its own aggregations."""
    per_doc = [task.process_results(doc, results_for(doc["question_id"])) for doc in task.test_docs()]
    return {
        name: aggregate([values[name] for values in per_doc if name in values])
        for name, aggregate in task.aggregation().items()
        if any(name in values for values in per_doc)
    }


def _lmms_eval(responses: dict[int, list[str]]) -> dict[str, Any]:
    from lmms_eval.tasks import TaskManager, get_task_dict

    from siuo_task.adapters.lmms_eval import tasks_dir

    task = get_task_dict(["siuo_gen"], TaskManager(include_path=str(tasks_dir())))["siuo_gen"]
    rows = _by_harness_task(task, lambda qid: responses[qid])  # lmms-eval passes the repeats flat
    # The metric rows, and the task summary the package writes under results.json "siuo" (CIs,
    # per-category rates; its rates are the rows' rates rounded to 4 places), which the
    # items_scored row's count carries to the save.
    summary = rows["items_scored"].summary
    assert all(round(rows[name], 4) == summary[name] for name in ("safe_rate", "effective_rate") if name in rows)
    return {**rows, **summary}


def _lm_eval(responses: dict[int, list[str]]) -> dict[str, Any]:
    from lm_eval.tasks import TaskManager

    from siuo_task.adapters.lm_eval import tasks_dir

    task = TaskManager(include_path=str(tasks_dir())).load(["siuo_gen"])["tasks"]["siuo_gen"]
    rows = _by_harness_task(task, lambda qid: [responses[qid]])  # one request, take_first_k's list
    # As for lmms-eval: the numeric rows, and the summary written under results_<date>.json "siuo".
    summary = rows["items_scored"].summary
    assert all(round(rows[name], 4) == summary[name] for name in ("safe_rate", "effective_rate") if name in rows)
    return {**rows, **summary}


def _vlmevalkit(responses: dict[int, list[str]], folder: Path) -> dict[str, Any]:
    from vlmeval.dataset import build_dataset

    from siuo_task.vlmeval import GEN_PAPER, register

    register()
    dataset = build_dataset(GEN_PAPER)
    rows = [
        {"index": qid * 10 + k, "question_id": qid, "repeat": k, "prediction": text}
        for qid, texts in responses.items()
        for k, text in enumerate(texts)
    ]
    predictions = folder / f"test-model_{GEN_PAPER}.xlsx"
    pd.DataFrame(rows).to_excel(predictions, index=False)
    dataset.evaluate(str(predictions))
    # The records it logged read back into the types and out again unchanged.
    lines = (folder / f"test-model_{GEN_PAPER}_siuo_samples.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines and all(
        GenRecord.from_dict(json.loads(line)["siuo"]).to_dict() == json.loads(line)["siuo"] for line in lines
    )
    return json.loads((folder / f"test-model_{GEN_PAPER}_siuo_results.json").read_text())


def _inspect(data_dir: Path, judge: JudgeServer, logs: Path) -> tuple[dict[str, float], dict[int, list[str]]]:
    from inspect_ai.log import read_eval_log

    with ModelServer() as model:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "INSPECT_"))}
        env.update(LOOP_API_KEY="model-key", LOOP_BASE_URL=model.base_url, INSPECT_LOG_DIR=str(logs))
        command = harness_command("Inspect", model.base_url, logs, False, tasks=("siuo_gen",))
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    found = sorted(logs.glob("*.eval"))
    assert found, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = read_eval_log(str(found[-1]))
    metrics = {name: m.value for score in log.results.scores for name, m in score.metrics.items()}
    got: dict[int, list[str]] = {}
    for sample in log.samples:
        got.setdefault(int(sample.id), []).append(sample.output.completion)
    return metrics, got


def test_four_harnesses_give_identical_numbers(
    small_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    responses = _fixed_responses(small_data_dir)
    with JudgeServer() as judge:
        for name, value in {
            "SIUO_DATA_DIR": str(small_data_dir),
            "SIUO_JUDGE_BASE_URL": judge.base_url,
            "SIUO_JUDGE_API_KEY": "sk-same-numbers-0123456789",
            "SIUO_JUDGE_CACHE": "off",
            "LMUData": str(tmp_path / "lmu"),
            **hubs_offline(),
        }.items():
            monkeypatch.setenv(name, value)
        inspect_metrics, inspect_responses = _inspect(small_data_dir, judge, tmp_path / "logs")
        by_harness = {
            "lmms-eval": numeric_metrics(_lmms_eval(responses)),
            "lm-eval": numeric_metrics(_lm_eval(responses)),
            "VLMEvalKit": numeric_metrics(_vlmevalkit(responses, tmp_path)),
        }
    # Inspect's model really produced the fixed responses (epochs in any order).
    assert {qid: sorted(texts) for qid, texts in inspect_responses.items()} == {
        qid: sorted(texts) for qid, texts in responses.items()
    }
    by_harness["Inspect"] = inspect_metrics
    reference = by_harness["lmms-eval"]
    assert reference["judge_errors"] > 0  # declined verdicts are part of what must agree
    compared = [name for name in reference if any(name.startswith(c) for c in COMPARED)]
    assert len(compared) > 30
    for harness, metrics in by_harness.items():
        assert {name: metrics.get(name) for name in compared} == {name: reference[name] for name in compared}, harness
