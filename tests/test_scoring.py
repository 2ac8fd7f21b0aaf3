"""Judging responses with the real engine against a real loopback chat-completions server."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from PIL import Image

from siuo_task.benchmark.data import load_siuo
from siuo_task.benchmark.parsing import (
    is_effective,
    is_judge_decline,
    parse_effectiveness_verdict,
    parse_safety_verdict,
)
from siuo_task.benchmark.prompts import PROMPT_VERSION, safety_judge_prompt
from siuo_task.benchmark.scoring import (
    judge_requests,
    parse_verdict,
    score_gen_item,
    siuo_judge_request,
    trace_judge_request,
)
from siuo_task.errors import JudgeEndpointError
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine
from tests.helpers.cli_runs import SECRET
from tests.helpers.judge_server import SERVED_MODEL, JudgeServer, choose_reply


def _engine(server: JudgeServer, **overrides: object) -> JudgeEngine:
    config = JudgeConfig(base_url=server.base_url, api_key=SECRET, model="requested-judge", **overrides)
    return JudgeEngine(config)


def _first_response_with(kind: str, wanted: object, start: int = 0) -> str:
    """A response text for which the test server's reply for ``kind`` intends ``wanted``."""
    for number in range(start, start + 10_000):
        text = f"response number {number}"
        if choose_reply(kind, text)[1] == wanted:
            return text
    raise AssertionError("no such response")


def test_verdicts_match_what_the_server_meant(small_data_dir: Path, judge_server: JudgeServer) -> None:
    item = load_siuo(small_data_dir).gen[0]
    responses = [f"answer {n}" for n in range(12)]
    score = score_gen_item(item, responses, _engine(judge_server))
    assert len(judge_server.log.exchanges) == 2 * len(responses)
    for response_score in score.responses:
        safe_meant = choose_reply("safety", response_score.response)[1]
        effect_meant = choose_reply("effectiveness", response_score.response)[1]
        assert response_score.safe is safe_meant
        assert response_score.effective is is_effective(effect_meant)
        assert response_score.safety_judge.model == SERVED_MODEL
    assert all(exchange.question == item.question for exchange in judge_server.log.exchanges)
    assert all(exchange.image_mime == "image/png" for exchange in judge_server.log.exchanges)


def test_empty_response_is_safe_not_effective_without_a_call(small_data_dir: Path, judge_server: JudgeServer) -> None:
    item = load_siuo(small_data_dir).gen[0]
    score = score_gen_item(item, ["", "   "], _engine(judge_server))
    assert judge_server.log.exchanges == []
    assert score.safe is True and score.effective is False and score.safe_effective is False
    assert score.judge_errors == 0 and not score.missing_votes


def test_a_declining_judge_is_an_error_not_a_verdict(small_data_dir: Path, judge_server: JudgeServer) -> None:
    item = load_siuo(small_data_dir).gen[0]
    declined = _first_response_with("safety", None)
    safe = _first_response_with("safety", True)
    unsafe = _first_response_with("safety", False)
    score = score_gen_item(item, [declined, safe, unsafe], _engine(judge_server))
    refused = score.responses[0]
    assert refused.safe is None
    assert (
        refused.safety_judge.error == "no safety verdict: the judge declined to grade" and refused.safety_judge.declined
    )
    assert refused.safety_judge.raw_text == choose_reply("safety", declined)[0]
    # One valid vote each way: a tie, which counts as not safe, decided with a missing vote.
    assert score.safe is False and score.missing_votes
    assert score.judge_errors >= 1


def test_image_is_sent_with_its_real_mime_type(small_data_dir: Path, tmp_path: Path, judge_server: JudgeServer) -> None:
    item = load_siuo(small_data_dir).gen[0]
    jpeg = tmp_path / "really-a-jpeg.png"
    Image.new("RGB", (20, 20), (1, 2, 3)).save(jpeg, format="JPEG")
    score_gen_item(dataclasses.replace(item, image_path=jpeg), ["hello"], _engine(judge_server))
    assert {exchange.image_mime for exchange in judge_server.log.exchanges} == {"image/jpeg"}


def test_a_refusing_server_stops_judging_without_the_key(small_data_dir: Path) -> None:
    item = load_siuo(small_data_dir).gen[0]
    with JudgeServer(fail_status=401) as server, pytest.raises(JudgeEndpointError) as caught:
        score_gen_item(item, ["a", "b", ""], _engine(server, max_attempts=1))
    # A 401 stops the pass: no retries, no further calls beyond those already in flight.
    assert 1 <= server.failed_calls <= 4
    message = str(caught.value)
    assert f"the judge endpoint {server.base_url} refused the API key (HTTP 401" in message
    assert SECRET not in message and "[redacted]" in message


def test_server_errors_are_retried_then_recorded(small_data_dir: Path) -> None:
    item = load_siuo(small_data_dir).gen[0]
    with JudgeServer(fail_status=500) as server:
        score = score_gen_item(item, ["only response"], _engine(server, max_attempts=2))
    assert server.failed_calls == 4  # two calls, each tried twice
    assert score.safe is None and score.effective is None
    assert all(r.safety_judge.error and r.safety_judge.error.startswith("judge call failed") for r in score.responses)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_results_keep_response_order(small_data_dir: Path, judge_server: JudgeServer, concurrency: int) -> None:
    item = load_siuo(small_data_dir).gen[0]
    responses = [f"ordered {n}" for n in range(8)]
    score = score_gen_item(item, responses, _engine(judge_server, concurrency=concurrency))
    assert [r.response for r in score.responses] == responses


def test_siuo_judge_requests_bring_siuo_parsers_version_and_decline_test(small_data_dir: Path) -> None:
    item = load_siuo(small_data_dir).gen[0]
    safety, effectiveness = judge_requests(item, "an answer")
    assert (safety.parser, effectiveness.parser) == (parse_safety_verdict, parse_effectiveness_verdict)
    assert safety.prompt_version == effectiveness.prompt_version == PROMPT_VERSION
    assert safety.is_decline is effectiveness.is_decline is is_judge_decline
    assert trace_judge_request(item, "a trace") == siuo_judge_request(
        "safety",
        safety_judge_prompt(item.question, item.safety_warning, item.reference_answer, "a trace"),
        item.image_path,
    )
    assert parse_verdict("safety", "[Safety Judgement:] False") is False
    assert parse_verdict("effectiveness", "Effectiveness Judgement: Partially Effective") == "partially effective"
    with pytest.raises(ValueError, match=r"unknown SIUO judge kind 'relevance'.*'effectiveness', 'safety'"):
        siuo_judge_request("relevance", "prompt", item.image_path)  # type: ignore[arg-type]
