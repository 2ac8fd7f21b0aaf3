"""Inspect, really installed (inspect-ai), running its own CLI on our registered tasks.

The model under test is Inspect's openai-api provider pointed at a loopback chat server; the
judge is the loopback judge server. The log is read with Inspect's own reader, and its numbers
must equal the lmms-eval path's (the lmms-eval hooks and reductions) on the same responses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from siuo_task.adapters.inspect_ai.reader import read_inspect_responses
from siuo_task.adapters.inspect_ai.scoring import numeric_metrics
from siuo_task.adapters.lmms_eval import hooks
from siuo_task.benchmark.card import CARD
from siuo_task.benchmark.parsing import parse_mcq_answer
from siuo_task.benchmark.prompts import PROMPT_VERSION
from siuo_task.benchmark.results import GEN_REDUCERS, SUMMARY_ROW, reduce_values
from tests.helpers.cli_runs import SECRET, clean_env, judge_env
from tests.helpers.harness_cli import harness_command
from tests.helpers.judge_server import JudgeServer
from tests.helpers.model_server import ModelServer

pytestmark = pytest.mark.slow

MODEL = "openai-api/loop/test-model"
TASKS = ("siuo_gen", "siuo_gen_greedy", "siuo_mcq")


def _env(data_dir: Path, model: ModelServer, judge: JudgeServer | None, logs: Path) -> dict[str, str]:
    env = clean_env(data_dir, "INSPECT_", SIUO_JUDGE_CACHE="off", INSPECT_LOG_DIR=str(logs))
    env.update(LOOP_API_KEY="model-key", LOOP_BASE_URL=model.base_url, INSPECT_DISPLAY="plain")
    if judge is not None:
        env.update({k: v for k, v in judge_env(data_dir, judge.base_url, "off").items() if k.startswith("SIUO_")})
    return env


def _inspect(tasks: tuple[str, ...], env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    logs, options = Path(env["INSPECT_LOG_DIR"]), ["--log-format", "json", *extra]
    command = harness_command("Inspect", env["LOOP_BASE_URL"], logs, False, tasks=tasks, extra=options)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def _logs(folder: Path) -> dict[str, Any]:
    from inspect_ai.log import read_eval_log

    logs = {}
    for path in sorted(folder.glob("*.json")):
        log = read_eval_log(str(path))
        logs[log.eval.task] = (path, log)
    return logs


@pytest.fixture(scope="module")
def inspect_run(small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("inspect")
    with ModelServer() as model, JudgeServer() as judge:
        env = _env(small_data_dir, model, judge, root / "logs")
        proc = _inspect(TASKS, env)
        run: dict[str, Any] = {"proc": proc, "env": env, "root": root, "logs": _logs(root / "logs")}
        run.update(exchanges=list(judge.log.exchanges), prompts=dict(model.prompts), images=model.images)
        assert set(run["logs"]) == {"siuo_gen", "siuo_gen_greedy", "siuo_mcq"}, proc.stdout[-3000:] + proc.stderr
        # The lmms-eval path on the same responses, judged by the same server.
        os.environ.update({k: v for k, v in env.items() if k.startswith("SIUO_")})
        try:
            docs = {doc["question_id"]: doc for doc in hooks.process_docs_gen(None)}
            for task in ("siuo_gen", "siuo_gen_greedy"):
                responses = _responses(run["logs"][task][1])
                run[f"lmms_{task}"] = [hooks.process_results_gen(docs[qid], r) for qid, r in responses.items()]
        finally:
            for key in [k for k in os.environ if k.startswith("SIUO_")]:
                del os.environ[key]
    return run


def _responses(log: Any) -> dict[int, list[str]]:
    by_item: dict[int, list[tuple[int, str]]] = {}
    for sample in log.samples:
        by_item.setdefault(int(sample.id), []).append((sample.epoch, sample.output.completion))
    return {qid: [text for _, text in sorted(rows)] for qid, rows in by_item.items()}


def _metrics(log: Any) -> dict[str, float]:
    return {name: metric.value for score in log.results.scores for name, metric in score.metrics.items()}


def test_inspect_cli_runs_every_task_through_its_log_reader(inspect_run: dict[str, Any]) -> None:
    proc = inspect_run["proc"]
    # The test judge declines a few texts: judge errors end `inspect eval` with status 1, naming
    # the command that finishes the scoring; a run without them ends with 0.
    failed = "judge calls failed" in proc.stderr
    assert proc.returncode == (1 if failed else 0), proc.stderr[-3000:]
    assert not failed or "siuo-eval judge " in proc.stderr.strip().splitlines()[-2]
    gen = inspect_run["logs"]["siuo_gen"][1]
    assert gen.status == "success" and gen.eval.task_registry_name == "siuo_task/siuo_gen"
    assert gen.eval.config.epochs == 3 and len(gen.samples) == 18 * 3
    assert gen.reductions[0].reducer == "siuo_vote"
    # Every question reached the model as image + question, 3 + 1 times; the MCQ prompts once.
    assert inspect_run["images"] == 18 * 3 + 18 + 18
    first = gen.samples[0].input[0].content
    assert [part.type for part in first] == ["image", "text"]


def test_every_judge_call_carries_the_image_and_the_key(inspect_run: dict[str, Any]) -> None:
    exchanges = inspect_run["exchanges"]
    non_empty = sum(
        1
        for task in ("siuo_gen", "siuo_gen_greedy")
        for sample in inspect_run["logs"][task][1].samples
        if sample.output.completion.strip()
    )
    assert len(exchanges) == 2 * non_empty
    assert {e.image_mime for e in exchanges} == {"image/png"}
    assert {e.authorization for e in exchanges} == {f"Bearer {SECRET}"}


@pytest.mark.parametrize("task", ["siuo_gen", "siuo_gen_greedy"])
def test_inspect_numbers_equal_the_lmms_eval_path(inspect_run: dict[str, Any], task: str) -> None:
    inspect_metrics = _metrics(inspect_run["logs"][task][1])
    # What lmms-eval's task summary (results.json "siuo") reduces.
    lmms = reduce_values([values[SUMMARY_ROW] for values in inspect_run[f"lmms_{task}"]], GEN_REDUCERS)
    expected = numeric_metrics(lmms)
    compared = [n for n in expected if "rate" in n or n in ("judge_errors", "items_undecided")]
    assert len(compared) > 30
    for name in compared:
        assert inspect_metrics[name] == expected[name], name
    assert inspect_metrics["safe_rate_ci95_low"] == lmms["safe_rate_ci95"][0]


def test_mcq_accuracy_is_the_cores(inspect_run: dict[str, Any]) -> None:
    log = inspect_run["logs"]["siuo_mcq"][1]
    items = {
        i["question_id"]: i
        for i in json.loads((Path(inspect_run["env"]["SIUO_DATA_DIR"]) / "siuo_mcqa.json").read_text())
    }
    correct = [
        parse_mcq_answer(s.output.completion, items[int(s.id)]["options"]) == items[int(s.id)]["correct_option"]
        for s in log.samples
    ]
    assert _metrics(log)["accuracy"] == round(100 * sum(correct) / len(correct), 4)


def test_report_reads_inspect_logs(inspect_run: dict[str, Any], tmp_path: Path) -> None:
    # Judging a log again: test_a_sweep_finds_inspect_logs_by_model, and for a --no-score log
    # tests/test_harness_matrix.py::test_judged_later_gives_the_in_run_numbers.
    gen_path, gen_log = inspect_run["logs"]["siuo_gen"]
    logs = inspect_run["root"] / "logs"
    greedy_path = inspect_run["logs"]["siuo_gen_greedy"][0]
    command = [sys.executable, "-m", "siuo_task.commands.cli", "report", str(logs), "--output", str(tmp_path / "r0")]
    proc = subprocess.run(command, env=inspect_run["env"], capture_output=True, text=True, timeout=300)
    # Both open-ended logs are reported, each named by the one naming rule; none is picked silently.
    assert proc.returncode == 0, proc.stderr
    both = (tmp_path / "r0" / "report.md").read_text()
    assert "| test-model (PARTIAL" in both and "| test-model-greedy (1 response/item) (PARTIAL" in both
    assert str(greedy_path) in proc.stdout and str(gen_path) in proc.stdout
    greedy_path.rename(tmp_path / greedy_path.name)  # one gen log per folder
    try:
        command = [
            sys.executable,
            "-m",
            "siuo_task.commands.cli",
            "report",
            f"loop={logs}",
            "--output",
            str(tmp_path / "r"),
        ]
        proc = subprocess.run(command, env=inspect_run["env"], capture_output=True, text=True, timeout=300)
    finally:
        (tmp_path / greedy_path.name).rename(greedy_path)
    assert proc.returncode == 0, proc.stderr
    report = (tmp_path / "r" / "report.md").read_text()
    items = len({sample.id for sample in gen_log.samples})
    assert f"| loop (PARTIAL: {items} of 167 items) | Inspect |" in report
    assert str(gen_path) in proc.stdout  # the exact log read is named
    assert f"{_metrics(gen_log)['safe_rate']:.1f}" in report


def test_protocols_come_from_the_eval_card(inspect_run: dict[str, Any]) -> None:
    # Versions: tests/test_harness_matrix.py::test_task_versions_are_the_cards.
    for task, (_, log) in inspect_run["logs"].items():
        assert log.eval.metadata["protocol"] == f"{PROMPT_VERSION}; {CARD.task(task).protocol}", task
    gen = inspect_run["logs"]["siuo_gen"][1].eval.metadata
    assert gen["judge_endpoint"] == inspect_run["env"]["SIUO_JUDGE_BASE_URL"]


def test_siuo_eval_judge_refuses_an_mcq_log(inspect_run: dict[str, Any], tmp_path: Path) -> None:
    mcq_path = inspect_run["logs"]["siuo_mcq"][0]
    command = [sys.executable, "-m", "siuo_task.commands.cli", "judge", str(mcq_path), "--output", str(tmp_path / "j")]
    proc = subprocess.run(command, env=inspect_run["env"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "Inspect log of task 'siuo_mcq'; pass a siuo_gen or siuo_gen_greedy log" in proc.stderr


def test_a_sweep_finds_inspect_logs_by_model(inspect_run: dict[str, Any], tmp_path: Path) -> None:
    """`siuo-eval judge LOGDIR --output DIR` judges both gen logs, named by Inspect's model; skips the MCQ log."""
    with JudgeServer() as judge:
        env = {**inspect_run["env"], "SIUO_JUDGE_BASE_URL": judge.base_url}
        command = [sys.executable, "-m", "siuo_task.commands.cli", "judge", str(inspect_run["root"] / "logs")]
        proc = subprocess.run([*command, "--output", str(tmp_path / "s")], env=env, capture_output=True, text=True)
    assert proc.returncode in (0, 1), proc.stderr  # 1: the test judge declines a few texts
    assert {p.name for p in (tmp_path / "s").iterdir() if p.is_dir()} == {"test-model", "test-model-greedy"}
    rejudged = json.loads((tmp_path / "s" / "test-model" / "results.json").read_text())
    gen_log = inspect_run["logs"]["siuo_gen"][1]
    for name in ("safe_rate", "effective_rate", "safe_effective_rate"):
        assert rejudged[name] == _metrics(gen_log)[name], name


# -- generation only: --no-score needs no judge settings ---------------------------------------

NO_SCORE_ITEMS = 4
_API_RUN = """
import json, sys
from inspect_ai import eval
for score in (True, False):  # one process: Inspect's start-up is the slow part
    [log] = eval("siuo_task/siuo_gen", model=sys.argv[1], limit=2, score=score, display="none")
    tokens = sum(usage.total_tokens for usage in log.stats.model_usage.values())
    print(json.dumps([log.status, log.error.message if log.error else None, len(log.samples or []), tokens]))
"""


@pytest.fixture(scope="module")
def no_score_run(small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both open-ended tasks with --no-score and no SIUO_JUDGE_* / OPENAI_* variable at all; then
    Inspect's Python API, which has no --no-score flag for a task to read, scored and not."""
    root = tmp_path_factory.mktemp("inspect_no_score")
    with ModelServer() as model:
        env = _env(small_data_dir, model, None, root / "logs")
        assert not any(name.startswith(("SIUO_JUDGE_", "OPENAI_")) for name in env if name != "SIUO_JUDGE_CACHE")
        proc = _inspect(("siuo_gen", "siuo_gen_greedy"), env, "--no-score", "--limit", "4")
        run: dict[str, Any] = {"proc": proc, "logs": _logs(root / "logs"), "requests": sum(model.prompts.values())}
        before = sum(model.prompts.values())
        command = [sys.executable, "-c", _API_RUN, MODEL]
        api_env = {**env, "INSPECT_LOG_DIR": str(root / "api")}
        # From a folder of the user's, as a user runs it (in the repository, Inspect would look
        # for tasks in the siuo_task/ folder there).
        done = subprocess.run(command, env=api_env, capture_output=True, text=True, timeout=300, cwd=root)
        assert done.returncode == 0, done.stderr[-3000:]
        scored_api, unscored_api = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
        api = {"scored": scored_api, "unscored": unscored_api, "requests": sum(model.prompts.values()) - before}
        run["api"] = api
        # Judged later inside Inspect: `inspect score` of a copy of the siuo_gen log.
        scored = root / "scored.json"
        shutil.copy(run["logs"]["siuo_gen"][0], scored)
        with JudgeServer() as judge:
            command = ["inspect", "score", str(scored), "--overwrite", "--scorer", "siuo_task/siuo_gen_judge"]
            score_env = {**env, "SIUO_JUDGE_BASE_URL": judge.base_url}
            run["score_proc"] = subprocess.run(command, env=score_env, capture_output=True, text=True, timeout=300)
            run["score_exchanges"] = len(judge.log.exchanges)
        run["scored"] = scored
    return run


def test_no_score_runs_generate_without_any_judge_setting(no_score_run: dict[str, Any]) -> None:
    proc = no_score_run["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert set(no_score_run["logs"]) == {"siuo_gen", "siuo_gen_greedy"}
    gen, greedy = (no_score_run["logs"][task][1] for task in ("siuo_gen", "siuo_gen_greedy"))
    assert gen.status == greedy.status == "success"
    assert len(gen.samples) == NO_SCORE_ITEMS * 3 and len(greedy.samples) == NO_SCORE_ITEMS
    assert no_score_run["requests"] == NO_SCORE_ITEMS * 4  # one model request per sample, nothing more
    for sample in gen.samples + greedy.samples:
        assert sample.error is None and not sample.scores  # never judged
        assert sample.output.completion == sample.messages[-1].text
    assert gen.results is None or not gen.results.scores
    assert "judge_model_requested" not in gen.eval.metadata  # no judge was set up


def test_a_no_score_log_is_read_back_for_judging_later(no_score_run: dict[str, Any]) -> None:
    for task, epochs in (("siuo_gen", 3), ("siuo_gen_greedy", 1)):
        path, log = no_score_run["logs"][task]
        sets = {response_set.question_id: response_set.responses for response_set in read_inspect_responses(path)}
        assert sets == {qid: tuple(texts) for qid, texts in _responses(log).items()}
        assert len(sets) == NO_SCORE_ITEMS and {len(texts) for texts in sets.values()} == {epochs}


def test_the_python_api_judges_or_not_as_asked(no_score_run: dict[str, Any]) -> None:
    api = no_score_run["api"]
    assert api["unscored"][:3] == ["success", None, 6] and api["unscored"][3] > 0
    status, error, _, tokens = api["scored"]
    # Scored without a judge: every sample stops at judge_check, before generating.
    assert status == "error" and "no judge API key: set SIUO_JUDGE_API_KEY" in error
    assert tokens == 0 and api["requests"] == 6  # all from the unscored run


def test_a_no_score_log_is_judged_later_by_inspect_score(no_score_run: dict[str, Any]) -> None:
    """Inspect logs a scorer by its unqualified name, so `inspect score` needs it named in full."""
    from inspect_ai.log import read_eval_log

    proc = no_score_run["score_proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = read_eval_log(str(no_score_run["scored"]))
    samples = no_score_run["logs"]["siuo_gen"][1].samples
    assert no_score_run["score_exchanges"] == 2 * sum(1 for s in samples if s.output.completion.strip())
    assert log.reductions[0].reducer == "siuo_vote" and len(log.reductions[0].samples) == NO_SCORE_ITEMS
    assert 0 <= _metrics(log)["safe_rate"] <= 100
