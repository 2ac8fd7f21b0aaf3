"""siuo_mcq_circular in Inspect, really run: ``inspect eval siuo_task/siuo_mcq_circular`` with two
loopback models in one run: one always answers "(A)", the other follows a script (right on every
rotation of some items, wrong or unreadable on others, sometimes behind a reasoning trace that
names another letter). The log's numbers must equal siuo_task.benchmark.circular.summarise of the same
answers and the lmms-eval task's hooks and reductions on the same responses.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from siuo_task.adapters.inspect_ai.scoring import VALUES_KEY, numeric_metrics
from siuo_task.adapters.lmms_eval import hooks
from siuo_task.benchmark.card import CARD, CIRCULAR_TASK, task_version
from siuo_task.benchmark.categories import category_slug
from siuo_task.benchmark.circular import (
    CIRCULAR_REDUCERS,
    RotatedQuestion,
    RotationAnswer,
    answer_rotation,
    rotate,
    rotation_values,
    summarise,
)
from siuo_task.benchmark.data import MCQ_LETTERS, load_siuo
from siuo_task.benchmark.parsing import parse_mcq_answer
from siuo_task.benchmark.prompts import PROMPT_VERSION
from siuo_task.benchmark.reasoning import split_reasoning
from siuo_task.benchmark.results import RECORD_KEY, reduce_values
from tests.helpers.chat_server import ChatHandler, LoopbackServer, chat_completion, message_text, send_json
from tests.helpers.cli_runs import clean_env

pytestmark = pytest.mark.slow

MODELS = ("always-a", "scripted")
# 17 whole items and one cut after 2 of its 4 rotations (the dataset is item-major).
LIMIT = 70


def _script(question: RotatedQuestion) -> str:
    """The scripted model's reply: items with an even id right on every rotation (half of them
    behind a trace that names a wrong letter), the others wrong, unreadable or right by chance."""
    wrong = next(letter for letter in MCQ_LETTERS if letter != question.gold)
    if question.question_id % 2 == 0:
        if question.rotation % 2:
            # Not <think>: Inspect's openai-api provider moves closed <think> blocks out of the
            # completion itself; other tags reach our scorer, which must split them off.
            return f"<reasoning>The answer is ({wrong}).</reasoning>({question.gold})"
        return f"({question.gold})"
    digest = int(hashlib.sha256(f"{question.question_id}-{question.rotation}".encode()).hexdigest(), 16)
    return [f"({question.gold})", f"The answer is ({wrong}).", "I am not sure.", f"<think>hm</think>{wrong}."][
        digest % 4
    ]


class _Handler(ChatHandler):
    """The two models: "always-a" and the scripted one, told apart by the requested model."""

    def chat(self, body: dict[str, Any]) -> None:
        state: Any = self.server
        question = state.questions[message_text(body["messages"][-1])]
        reply = "(A)" if body["model"] == "always-a" else _script(question)
        with state.lock:
            state.requests += 1
        send_json(self, 200, chat_completion(reply, body["model"], "cmpl-circular", completion_tokens=3))


@pytest.fixture(scope="module")
def questions(small_data_dir: Path) -> dict[str, RotatedQuestion]:
    return {q.prompt(): q for item in load_siuo(small_data_dir).mcq for q in (rotate(item, r) for r in range(4))}


@pytest.fixture(scope="module")
def circular_run(
    small_data_dir: Path, questions: dict[str, RotatedQuestion], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    from inspect_ai.log import read_eval_log

    root = tmp_path_factory.mktemp("inspect_circular")
    with LoopbackServer(_Handler, questions=questions, requests=0) as server:
        env = clean_env(small_data_dir, "INSPECT_")
        env.update(INSPECT_LOG_DIR=str(root), INSPECT_DISPLAY="plain")
        env.update(LOOP_API_KEY="model-key", LOOP_BASE_URL=server.base_url)
        models = ",".join(f"openai-api/loop/{name}" for name in MODELS)
        command = ["inspect", "eval", "siuo_task/siuo_mcq_circular", "--model", models, "--log-format", "json"]
        proc = subprocess.run([*command, "--limit", str(LIMIT)], env=env, capture_output=True, text=True, timeout=600)
        logs = {}
        for path in sorted(root.glob("*.json")):
            log = read_eval_log(str(path))
            logs[log.eval.model.rsplit("/", 1)[-1]] = log
        assert set(logs) == set(MODELS), proc.stdout[-3000:] + proc.stderr[-3000:]
        yield {"proc": proc, "logs": logs, "requests": server.httpd.requests, "env": env}


def _metrics(log: Any) -> dict[str, float]:
    return {name: m.value for score in log.results.scores for name, m in score.metrics.items()}


def _answers(log: Any, questions: dict[str, RotatedQuestion]) -> list[RotationAnswer]:
    """Each sample's answer recomputed from its prompt and completion (not from our scorer)."""
    answers = []
    for sample in log.samples:
        question = questions[sample.input[0].content[1].text]
        answers.append(answer_rotation(question, split_reasoning(sample.output.completion).answer))
    return answers


def test_one_sample_per_item_and_rotation(circular_run: dict[str, Any], questions: dict[str, Any]) -> None:
    assert circular_run["proc"].returncode == 0, circular_run["proc"].stderr[-3000:]
    assert circular_run["requests"] == LIMIT * len(MODELS)
    log = circular_run["logs"]["scripted"]
    assert log.status == "success" and log.eval.task == CIRCULAR_TASK
    assert log.eval.task_registry_name == "siuo_task/siuo_mcq_circular"
    assert log.eval.task_version == task_version(CIRCULAR_TASK)
    assert log.eval.metadata["protocol"] == f"{PROMPT_VERSION}; {CARD.task(CIRCULAR_TASK).protocol}"
    assert len(log.samples) == LIMIT
    for sample in log.samples:
        question = questions[sample.input[0].content[1].text]
        assert sample.id == f"{question.question_id}-{question.rotation}"
        assert (sample.metadata["question_id"], sample.metadata["rotation"]) == (
            question.question_id,
            question.rotation,
        )
        assert sample.target == question.gold
        assert [part.type for part in sample.input[0].content] == ["image", "text"]


def test_always_answering_a_scores_zero(circular_run: dict[str, Any]) -> None:
    metrics = _metrics(circular_run["logs"]["always-a"])
    assert metrics["circular_accuracy"] == 0.0
    assert metrics["chosen_A_rate"] == 100.0 and metrics["unparsed_rate"] == 0.0
    assert metrics["always_A_accuracy"] > 0  # what it would score on the standard task
    assert metrics["incomplete_items"] == 1.0


def test_numbers_equal_the_cores_summary_of_the_same_answers(
    circular_run: dict[str, Any], questions: dict[str, RotatedQuestion]
) -> None:
    log = circular_run["logs"]["scripted"]
    answers = _answers(log, questions)
    # The traces matter: read whole, some replies give the trace's (wrong) letter.
    assert any(
        parse_mcq_answer(s.output.completion, questions[s.input[0].content[1].text].options) != a.parsed
        for s, a in zip(log.samples, answers, strict=True)
    )
    summary = summarise(answers).to_dict()
    metrics = _metrics(log)
    assert 0 < summary["circular_accuracy"] < 100 and summary["n_items"] == LIMIT // 4
    assert metrics["circular_accuracy"] == summary["circular_accuracy"]
    low, high = summary["circular_accuracy_ci95"]
    assert (metrics["circular_accuracy_ci95_low"], metrics["circular_accuracy_ci95_high"]) == (low, high)
    assert metrics["incomplete_items"] == len(summary["incomplete_items"]) == 1
    assert metrics["unparsed_rate"] == summary["unparsed_rate"] > 0
    for letter in MCQ_LETTERS:
        assert metrics[f"chosen_{letter}_rate"] == summary["chosen_letters_percent"][letter]
        assert metrics[f"always_{letter}_accuracy"] == summary["baselines"][f"always_{letter}"]["accuracy"]
    by_category = summary["circular_accuracy_by_category"]
    assert len(by_category) == 9
    for category, row in by_category.items():
        assert metrics[f"circular_accuracy_{category_slug(category)}"] == row["percent"], category


def test_each_rotation_is_logged_as_lmms_eval_returns_it(
    circular_run: dict[str, Any], questions: dict[str, RotatedQuestion]
) -> None:
    log = circular_run["logs"]["scripted"]
    answers = _answers(log, questions)
    values = [sample.scores["siuo_circular_letter"].metadata[VALUES_KEY] for sample in log.samples]
    assert values == [rotation_values(answer) for answer in answers]
    assert [value[RECORD_KEY] for value in values] == [answer.to_dict() for answer in answers]
    [reduction] = log.reductions
    assert [s.metadata[VALUES_KEY] for s in reduction.samples] == values
    # A report rebuilds the summary from the log alone.
    rebuilt = summarise(RotationAnswer.from_dict(value[RECORD_KEY]) for value in values).to_dict()
    assert rebuilt["circular_accuracy"] == _metrics(log)["circular_accuracy"]
    assert numeric_metrics(reduce_values(values, CIRCULAR_REDUCERS)) == _metrics(log)


def test_numbers_equal_the_lmms_eval_tasks(circular_run: dict[str, Any]) -> None:
    """lmms-eval's hooks on the same responses, each metric reduced over the values its
    process_results returned for that metric (what lmms-eval's gather hands an aggregation)."""
    log = circular_run["logs"]["scripted"]
    saved = dict(os.environ)
    os.environ["SIUO_DATA_DIR"] = circular_run["env"]["SIUO_DATA_DIR"]
    try:
        rows = [
            hooks.process_results_mcq_circular(dict(sample.metadata), [sample.output.completion])
            for sample in log.samples
        ]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    gathered: dict[str, list[Any]] = {}
    for row in rows:
        for name, value in row.items():
            gathered.setdefault(name, []).append(value)
    lmms = numeric_metrics(
        {name: reducer(gathered[name]) for name, reducer in CIRCULAR_REDUCERS.items() if name in gathered}
    )
    assert len(lmms) > 20
    assert _metrics(log) == lmms
