"""Provider limits: x-ratelimit-* headers hold new requests machine-wide; SIUO_JUDGE_TPM spaces them by tokens."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from siuo_task.benchmark.data import load_siuo
from siuo_task.benchmark.scoring import gen_judge_requests
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine
from siuo_task.judge.limits import parse_reset
from siuo_task.judge.tokens import image_tokens, request_tokens
from tests.helpers.judge_server import JudgeServer


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.5", 0.5), ("x", None)],
)
def test_reset_headers_parse(header: str, seconds: float | None) -> None:
    assert parse_reset(header) == seconds


def test_image_tokens_follow_the_published_tile_counts() -> None:
    assert image_tokens(48, 40, "gpt-4o-2024-08-06") == 85 + 170  # one tile
    assert image_tokens(1024, 1024, "gpt-4o") == 85 + 170 * 4  # 768 x 768: 2 x 2 tiles
    assert image_tokens(4096, 2048, "gpt-4o-mini-2024-07-18") == 2833 + 5667 * 6  # 1536 x 768: 3 x 2 tiles


def _engine(server: JudgeServer, **settings: object) -> JudgeEngine:
    return JudgeEngine(JudgeConfig(base_url=server.base_url, api_key="sk-limits-0000000", cache_path=None, **settings))


def test_exhausted_token_window_holds_the_next_requests(small_data_dir: Path) -> None:
    requests = gen_judge_requests(load_siuo(small_data_dir).gen[0], ["one", "two"])[:3]
    headers = {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "300ms"}
    with JudgeServer(reply_headers=headers, declines=False) as server:
        started = time.monotonic()
        outcomes = _engine(server, concurrency=1).grade_many(requests)
        elapsed = time.monotonic() - started
    assert all(o.error is None for o in outcomes)
    assert elapsed >= 0.55  # each reply said the window is spent for 300 ms: two holds before the 2nd and 3rd


def test_tokens_per_minute_budget_spaces_requests(small_data_dir: Path) -> None:
    requests = gen_judge_requests(load_siuo(small_data_dir).gen[0], ["one", "two"])
    weight = max(request_tokens(r.prompt, r.image_path, "gpt-4o-2024-08-06") for r in requests) + 1024
    tpm = weight * 300  # one request's tokens take 0.2 s of the budget
    with JudgeServer(declines=False) as server:
        started = time.monotonic()
        _engine(server, concurrency=8, tokens_per_minute=tpm).grade_many(requests)
        elapsed = time.monotonic() - started
    assert elapsed >= 0.5  # four starts need at least three gaps of ~0.2 s


def test_tpm_setting_is_read_and_checked() -> None:
    config = JudgeConfig.from_env({"SIUO_JUDGE_BASE_URL": "http://h/v1", "SIUO_JUDGE_TPM": "200000"})
    assert config.tokens_per_minute == 200_000
    with pytest.raises(Exception, match="SIUO_JUDGE_TPM='lots' is not a whole number"):
        JudgeConfig.from_env({"SIUO_JUDGE_BASE_URL": "http://h/v1", "SIUO_JUDGE_TPM": "lots"})
