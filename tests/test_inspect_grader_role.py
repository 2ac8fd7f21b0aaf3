"""Inspect's ``grader`` model role as the judge, through Inspect's own CLI.

The model under test is the loopback model server behind ``openai-api/loop/...``; the grader is
the loopback judge server behind ``openai-api/grade/...`` (GRADE_BASE_URL), with no SIUO_JUDGE_*
variable set. The same run configured through SIUO_JUDGE_* against a fresh judge server (whose
replies depend on the request only) must score every sample and every metric the same.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli_runs import SECRET
from tests.helpers.judge_server import JudgeServer
from tests.helpers.model_server import ModelServer

pytestmark = pytest.mark.slow

MODEL = "openai-api/loop/test-model"
GRADER = "judge-x"  # the name the grader's provider asks its server for


def _env(data_dir: Path, model: ModelServer, logs: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIUO_", "OPENAI_", "INSPECT_", "GRADE_"))}
    env.update(SIUO_DATA_DIR=str(data_dir), SIUO_JUDGE_CACHE="off", INSPECT_LOG_DIR=str(logs))
    env.update(LOOP_API_KEY="model-key", LOOP_BASE_URL=model.base_url, INSPECT_DISPLAY="plain")
    return env


def _inspect(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    command = ["inspect", "eval", "siuo_task/siuo_gen_greedy", "--model", MODEL, "--log-format", "json", *extra]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def _log(folder: Path) -> Any:
    from inspect_ai.log import read_eval_log

    (path,) = folder.glob("*.json")
    return read_eval_log(str(path))


def _run(data_dir: Path, root: Path, through_role: bool) -> dict[str, Any]:
    with ModelServer(sampled=False) as model, JudgeServer(only_model=GRADER) as judge:
        env = _env(data_dir, model, root / "logs")
        if through_role:
            env.update(GRADE_BASE_URL=judge.base_url, GRADE_API_KEY=SECRET)
            proc = _inspect(env, "--model-role", f"grader=openai-api/grade/{GRADER}")
        else:
            env.update(SIUO_JUDGE_BASE_URL=judge.base_url, SIUO_JUDGE_API_KEY=SECRET, SIUO_JUDGE_MODEL=GRADER)
            proc = _inspect(env)
        return {
            "proc": proc,
            "log": _log(root / "logs"),
            "exchanges": list(judge.log.exchanges),
            "probes": list(judge.log.probes),
            "models_asked": {body.get("model") for body in judge.bodies},
            "settings": {(body.get("temperature"), body.get("max_tokens")) for body in judge.bodies},
            "model_prompts": sum(model.prompts.values()),
        }


@pytest.fixture(scope="module")
def runs(small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    root = tmp_path_factory.mktemp("grader")
    return {
        "role": _run(small_data_dir, root / "role", through_role=True),
        "env": _run(small_data_dir, root / "env", through_role=False),
    }


def _values(log: Any) -> dict[str, Any]:
    return {sample.id: sample.scores["siuo_gen_judge"].value for sample in log.samples}


def _metrics(log: Any) -> dict[str, float]:
    return {name: metric.value for score in log.results.scores for name, metric in score.metrics.items()}


def test_every_judge_call_goes_to_the_grader(runs: dict[str, dict[str, Any]]) -> None:
    role = runs["role"]
    assert role["log"].status == "success", role["proc"].stderr[-3000:]
    samples = role["log"].samples
    answered = sum(1 for sample in samples if sample.output.completion.strip())
    # Two judge calls per answered item, and the check before generating, all at the grader's
    # endpoint with its key and model name; the model's server saw the items' prompts only.
    assert len(role["exchanges"]) == 2 * answered and len(role["probes"]) == 1
    assert {e.authorization for e in role["exchanges"]} == {f"Bearer {SECRET}"}
    assert role["models_asked"] == {GRADER}
    assert role["model_prompts"] == len(samples) == 18
    assert {e.image_mime for e in role["exchanges"]} == {"image/png"}
    assert role["log"].eval.metadata["judge_model_requested"] == f"openai-api/grade/{GRADER}"


def test_the_grader_calls_are_in_each_samples_transcript(runs: dict[str, dict[str, Any]]) -> None:
    role = runs["role"]
    replies = {(e.kind, e.response): e.reply for e in role["exchanges"]}
    logged = []
    for sample in role["log"].samples:
        events = [event for event in sample.events if event.event == "model" and event.role == "grader"]
        logged += [event.output.completion for event in events]
        # This sample's judge replies are in its own transcript.
        response = sample.output.completion
        for kind in ("safety", "effectiveness"):
            if response.strip():
                assert replies[(kind, response)] in [event.output.completion for event in events]
    assert len(logged) == len(role["exchanges"]) + 1  # the check's call is in the first sample's


def test_role_and_siuo_judge_settings_score_the_same(runs: dict[str, dict[str, Any]]) -> None:
    role, env = runs["role"], runs["env"]
    assert env["log"].status == "success", env["proc"].stderr[-3000:]
    assert sorted((e.kind, e.response, e.reply) for e in role["exchanges"]) == sorted(
        (e.kind, e.response, e.reply) for e in env["exchanges"]
    )
    assert role["settings"] == env["settings"] == {(0.0, 1024)}
    assert _values(role["log"]) == _values(env["log"])
    role_metrics, env_metrics = _metrics(role["log"]), _metrics(env["log"])
    assert role_metrics.keys() == env_metrics.keys()
    for name, value in env_metrics.items():
        if name != "judge_wall_seconds":
            assert role_metrics[name] == value, name
    assert role["proc"].returncode == env["proc"].returncode
    assert SECRET not in role["proc"].stdout + role["proc"].stderr


def test_a_list_of_graders_is_refused_before_anything_runs(small_data_dir: Path, tmp_path: Path) -> None:
    with ModelServer() as model:
        env = {**_env(small_data_dir, model, tmp_path / "logs"), "GRADE_BASE_URL": model.base_url, "GRADE_API_KEY": "k"}
        proc = _inspect(env, "--model-role", "grader=openai-api/grade/a,openai-api/grade/b")
        assert proc.returncode != 0
        assert "panel of judges is not supported" in proc.stderr + proc.stdout
        assert sum(model.prompts.values()) == 0
