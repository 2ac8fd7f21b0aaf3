"""The one way to configure the judge, and that it never shows the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from siuo_task.errors import JudgeConfigError
from siuo_task.judge.config import DEFAULT_JUDGE_MODEL, OPENAI_DEFAULT_BASE_URL, JudgeConfig
from tests.helpers.cli_runs import SECRET


def test_missing_key_without_base_url_is_a_clear_error() -> None:
    with pytest.raises(JudgeConfigError, match=r"SIUO_JUDGE_API_KEY.*OPENAI_API_KEY.*SIUO_JUDGE_BASE_URL"):
        JudgeConfig.from_env({})


def test_openai_defaults() -> None:
    config = JudgeConfig.from_env({"OPENAI_API_KEY": SECRET})
    assert config.model == DEFAULT_JUDGE_MODEL == "gpt-4o-mini-2024-07-18"
    assert config.base_url == OPENAI_DEFAULT_BASE_URL
    assert config.api_key == SECRET
    assert config.temperature == 0.0
    assert config.max_tokens > 200


def test_siuo_variables_win_over_openai_ones() -> None:
    config = JudgeConfig.from_env(
        {
            "SIUO_JUDGE_MODEL": "Qwen/Qwen2.5-VL-72B-Instruct",
            "SIUO_JUDGE_BASE_URL": "http://127.0.0.1:8000/v1/",
            "OPENAI_BASE_URL": "http://elsewhere/v1",
            "SIUO_JUDGE_API_KEY": "local",
            "OPENAI_API_KEY": SECRET,
            "SIUO_JUDGE_CONCURRENCY": "8",
        }
    )
    assert config.model == "Qwen/Qwen2.5-VL-72B-Instruct"
    assert config.base_url == "http://127.0.0.1:8000/v1"
    assert config.api_key == "local"
    assert config.concurrency == 8


def test_local_server_needs_no_key() -> None:
    config = JudgeConfig.from_env({"OPENAI_BASE_URL": "http://127.0.0.1:30000/v1"})
    assert config.base_url == "http://127.0.0.1:30000/v1"
    assert config.api_key  # a placeholder, since the openai client insists on one


def test_endpoint_drops_credentials_and_query() -> None:
    config = JudgeConfig(base_url="https://user:pw@judge.example.org:8443/v1?key=abc")
    assert config.endpoint == "https://judge.example.org:8443/v1"


def test_repr_never_shows_the_key() -> None:
    config = JudgeConfig.from_env({"OPENAI_API_KEY": SECRET})
    assert SECRET not in repr(config) and SECRET not in str(config)


@pytest.mark.parametrize("value", ["many", "0"])
def test_bad_numbers_name_the_variable(value: str) -> None:
    with pytest.raises(JudgeConfigError, match="SIUO_JUDGE_CONCURRENCY"):
        JudgeConfig.from_env({"OPENAI_API_KEY": SECRET, "SIUO_JUDGE_CONCURRENCY": value})


@pytest.mark.parametrize(
    ("url", "fix"),
    [("localhost:8000/v1", "http://localhost:8000/v1"), ("127.0.0.1:8000", "http://127.0.0.1:8000/v1")],
)
def test_a_base_url_without_scheme_is_named_with_the_fix(url: str, fix: str) -> None:
    with pytest.raises(JudgeConfigError, match=re.escape(f"SIUO_JUDGE_BASE_URL='{url}' is not an http(s) URL")) as err:
        JudgeConfig.from_env({"SIUO_JUDGE_BASE_URL": url})
    assert f"e.g. {fix}" in str(err.value)


def test_the_pr_1503_recipe_sets_what_that_pull_request_sets() -> None:
    """docs/judge-choice.md's recipe labelled as VLMEvalKit PR #1503's judge settings, read as the
    judge reads its variables: gpt-4o-2024-11-20, temperature 0, max_tokens 4096, timeout 90 s."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "judge-choice.md").read_text(encoding="utf-8")
    (row,) = [line for line in page.splitlines() if line.startswith("| **VLMEvalKit PR #1503's judge settings**")]
    recipe = dict(re.findall(r"(SIUO_JUDGE_[A-Z_]+)=(\S+)", row))
    config = JudgeConfig.from_env({**recipe, "SIUO_JUDGE_API_KEY": SECRET})
    assert (config.model, config.temperature, config.max_tokens, config.timeout_s) == ("gpt-4o-2024-11-20", 0, 4096, 90)
    # The traced facts with their sources, and what stays unconfirmed.
    for fact in ("eb695133", "fe83028e", "e8e78f05", "not merged", "Align with SafeWork-R1 SIUO judge defaults"):
        assert fact in page, fact
    assert "the SafeWork-R1 paper's own statement of its SIUO protocol and judge (none found)" in page
