"""The grader role's judge settings: the same cache keys as SIUO_JUDGE_* for the same judge."""

from __future__ import annotations

from pathlib import Path

import pytest
from inspect_ai.model import ModelOutput, ModelUsage, get_model

from siuo_task.adapters.inspect_ai.grader import completion_from_output, grader_config
from siuo_task.adapters.inspect_ai.scoring import judge_config
from siuo_task.benchmark.parsing import parse_safety_verdict
from siuo_task.errors import JudgeConfigError
from siuo_task.judge.cache import cache_key
from siuo_task.judge.config import PLACEHOLDER_KEY, JudgeConfig
from siuo_task.judge.request import JudgeRequest, read_completion


def _key(config: JudgeConfig) -> str:
    return cache_key(
        model=config.model,
        endpoint=config.endpoint,
        prompt="p",
        image_sha256="",
        temperature=config.temperature,
        max_tokens=config.max_tokens,
        prompt_version="v",
        repeat=0,
    )


def test_a_grader_at_the_same_url_shares_the_siuo_judge_cache_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GRADE_BASE_URL", "http://127.0.0.1:8000/v1/")
    monkeypatch.setenv("GRADE_API_KEY", "grader-key")
    tuning = {"SIUO_JUDGE_MAX_TOKENS": "512", "SIUO_JUDGE_CONCURRENCY": "3", "SIUO_JUDGE_CACHE": str(tmp_path / "c")}
    # The role names the judge: SIUO_JUDGE_MODEL / _BASE_URL / _API_KEY do not change it.
    ignored = {"SIUO_JUDGE_MODEL": "other", "SIUO_JUDGE_BASE_URL": "http://10.0.0.1/v1", "OPENAI_API_KEY": "sk-x"}
    role = grader_config(get_model("openai-api/grade/judge-x"), {**tuning, **ignored})
    env = JudgeConfig.from_env(
        {**tuning, "SIUO_JUDGE_MODEL": "judge-x", "SIUO_JUDGE_BASE_URL": "http://127.0.0.1:8000/v1"},
        require_key=False,
    )
    assert (role.model, role.endpoint, role.max_tokens, role.concurrency) == ("judge-x", env.endpoint, 512, 3)
    assert role.api_key == PLACEHOLDER_KEY  # the provider's key is never read into the config
    assert _key(role) == _key(env)


def test_a_providers_default_endpoint_is_named_stably(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    openai = grader_config(get_model("openai/gpt-4o-mini-2024-07-18"), {})
    assert (openai.model, openai.endpoint) == ("gpt-4o-mini-2024-07-18", "https://api.openai.com/v1")
    assert grader_config(get_model("mockllm/model"), {}).endpoint == "inspect://mockllm"


def test_inspects_output_is_read_by_the_requests_own_parser() -> None:
    request = JudgeRequest("safety", "prompt", None, parse_safety_verdict, "v", is_decline=lambda _: False)
    output = ModelOutput.from_content("judge-x", "[Reasons:] careful.\n[Safety Judgement:] True")
    output.usage = ModelUsage(input_tokens=11, output_tokens=7, total_tokens=18)
    outcome = read_completion(request, completion_from_output(output), attempts=1)
    assert (outcome.verdict, outcome.model) == (True, "judge-x")
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (11, 7)
    assert outcome.raw_text == "[Reasons:] careful.\n[Safety Judgement:] True"


def test_inspect_refuses_a_panel_file_and_names_the_role(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SIUO_JUDGE_PANEL", str(tmp_path / "panel.yaml"))
    monkeypatch.setenv("SIUO_JUDGE_BASE_URL", "http://127.0.0.1:8000/v1")
    with pytest.raises(JudgeConfigError, match="--model-role grader="):
        judge_config()
