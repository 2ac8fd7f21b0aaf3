"""VLMEvalKit's ``--judge MODEL`` is the judge, at the endpoint VLMEvalKit users set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from siuo_task.adapters.vlmevalkit.judge import base_url_of, vlmeval_judge
from siuo_task.errors import JudgeConfigError
from siuo_task.vlmeval import GEN_SINGLE
from tests.helpers.cli_runs import SECRET, clean_env, no_secret_in
from tests.helpers.harness_cli import harness_command, hubs_offline
from tests.helpers.judge_server import JudgeServer
from tests.helpers.model_server import ModelServer

RUNNER = ["run.py", "--model", "m", "--data", GEN_SINGLE]


def test_openai_api_base_may_be_the_full_chat_completions_url() -> None:
    assert base_url_of("http://127.0.0.1:8000/v1/chat/completions/") == "http://127.0.0.1:8000/v1"
    assert base_url_of("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


def test_judge_names_the_model_and_the_endpoint_comes_from_openai_api_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [*RUNNER, "--judge", "judge-y"])
    env = {"OPENAI_API_BASE": "http://127.0.0.1:8000/v1/chat/completions", "OPENAI_API_KEY": SECRET}
    config, line = vlmeval_judge({"model": "judge-y"}, env)
    assert (config.model, config.base_url, config.api_key) == ("judge-y", "http://127.0.0.1:8000/v1", SECRET)
    assert line == (
        "judge: --judge judge-y at http://127.0.0.1:8000/v1 (endpoint from OPENAI_API_BASE, its '/chat/completions' "
        "removed)"
    )
    # SIUO_JUDGE_BASE_URL wins over OPENAI_API_BASE, --judge-base-url over both.
    config, line = vlmeval_judge({"model": "judge-y"}, {**env, "SIUO_JUDGE_BASE_URL": "http://10.0.0.2:9/v1"})
    assert (
        config.endpoint == "http://10.0.0.2:9/v1"
        and line is not None
        and line.endswith("(endpoint from SIUO_JUDGE_BASE_URL)")
    )
    kwargs = {"model": "judge-y", "api_base": "http://10.0.0.3:9/v1/chat/completions", "key": "sk-other-key-0123"}
    config, _ = vlmeval_judge(kwargs, {**env, "SIUO_JUDGE_BASE_URL": "http://10.0.0.2:9/v1"})
    assert (config.endpoint, config.api_key) == ("http://10.0.0.3:9/v1", "sk-other-key-0123")


def test_vlmevalkits_own_default_judge_is_not_the_users(monkeypatch: pytest.MonkeyPatch) -> None:
    # No --judge: VLMEvalKit fills in a judge of its choosing; the judge stays SIUO_JUDGE_*.
    monkeypatch.setattr(sys, "argv", RUNNER)
    env = {"SIUO_JUDGE_BASE_URL": "http://127.0.0.1:8000/v1", "OPENAI_API_BASE": "http://10.0.0.9/v1"}
    config, line = vlmeval_judge({"model": "gpt-4o-mini"}, env)
    assert (config.model, config.endpoint, line) == ("gpt-4o-mini-2024-07-18", "http://127.0.0.1:8000/v1", None)
    # A direct call of evaluate (not VLMEvalKit's runner) names its judge.
    monkeypatch.setattr(sys, "argv", ["script.py"])
    assert vlmeval_judge({"model": "judge-z"}, env)[0].model == "judge-z"


@pytest.mark.slow
def test_vlmeval_judge_option_reaches_the_judge_server(small_data_dir: Path, tmp_path: Path) -> None:
    with ModelServer() as model, JudgeServer(only_model="judge-y") as judge:
        env = clean_env(small_data_dir, LMUData=str(tmp_path / "lmu"), **hubs_offline())
        # As VLMEvalKit users set it: the full chat-completions URL; no SIUO_JUDGE_* variable.
        env.update(OPENAI_API_BASE=f"{judge.base_url}/chat/completions", OPENAI_API_KEY=SECRET, SIUO_JUDGE_CACHE="off")
        work = tmp_path / "outputs"
        command = harness_command("VLMEvalKit", model.base_url, work, False, tasks=("siuo_gen_greedy",), api_nproc=4)
        command += ["--judge", "judge-y"]
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
        models_asked = {body.get("model") for body in judge.bodies}
        graded = len(judge.log.exchanges)
    assert models_asked == {"judge-y"}, proc.stderr[-3000:]
    assert graded > 0 and len(judge.log.probes) == 1
    assert f"siuo-task: judge: --judge judge-y at {judge.base_url} (endpoint from OPENAI_API_BASE" in proc.stderr
    (results,) = work.rglob(f"*{GEN_SINGLE}_siuo_results.json")
    assert json.loads(results.read_text())["judge_model_requested"] == "judge-y"
    no_secret_in(work, proc.stdout, proc.stderr)


def test_judge_and_a_panel_file_are_refused_together(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "argv", [*RUNNER, "--judge", "judge-y"])
    with pytest.raises(JudgeConfigError, match="named twice"):
        vlmeval_judge({"model": "judge-y"}, {"SIUO_JUDGE_PANEL": str(tmp_path / "panel.yaml")})
