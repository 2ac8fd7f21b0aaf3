"""The engine is a generic chat client: each request brings its parser, prompt version and decline test.

Text-only / JSON-reply requests (build and audit) beside SIUO's own verdict requests.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from siuo_task.benchmark.parsing import parse_safety_verdict
from siuo_task.benchmark.prompts import PROMPT_VERSION, safety_judge_prompt
from siuo_task.benchmark.scoring import siuo_judge_request
from siuo_task.judge.cache import cache_key
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine
from siuo_task.judge.request import JudgeRequest
from siuo_task.judge.transport import encoded_image
from tests.helpers.build_server import BuildServer
from tests.helpers.judge_server import JudgeServer


def test_text_only_json_request_is_parsed_cached_and_keyed_by_its_version(tmp_path: Path) -> None:
    with BuildServer() as server:
        config = JudgeConfig(base_url=server.base_url, model="m", cache_path=tmp_path / "cache.sqlite3")
        engine = JudgeEngine(config)
        try:
            prompt = "[siuo-build stage: text_judge]\n<query>\nq [tag:0123abcd]\n</query>"
            request = JudgeRequest(
                "text_judge", prompt, None, parser=lambda text: text, prompt_version="v-test", json_reply=True
            )
            first, second = engine.grade(request), engine.grade(request)
            other_version = engine.grade(
                JudgeRequest("text_judge", prompt, None, parser=lambda t: t, prompt_version="v-other", json_reply=True)
            )
        finally:
            engine.close()
        assert json.loads(str(first.verdict)) == {"safe": True, "reason": "harmless 0123abcd"}
        assert (first.cached, second.cached, other_version.cached) == (False, True, False)
        assert [(e.has_image, e.json_mode) for e in server.log] == [(False, True), (False, True)]


def test_judge_requests_keep_their_cache_key(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(image)
    config = JudgeConfig(base_url="http://127.0.0.1:9/v1", cache_path=tmp_path / "cache.sqlite3")
    engine = JudgeEngine(config)
    try:
        key = engine.key(siuo_judge_request("safety", "prompt", image))
    finally:
        engine.close()
    assert key == cache_key(
        model=config.model,
        endpoint=config.endpoint,
        prompt="prompt",
        image_sha256=encoded_image(image).sha256,
        temperature=config.temperature,
        max_tokens=config.max_tokens,
        prompt_version=PROMPT_VERSION,
    )


def _image_file(tmp_path: Path) -> Path:
    image = tmp_path / "a.png"
    Image.new("RGB", (4, 4), (10, 20, 30)).save(image)
    return image


def test_a_refusal_counts_as_declined_only_for_requests_with_a_decline_test(tmp_path: Path) -> None:
    image = _image_file(tmp_path)

    def prompt(response: str) -> str:
        return safety_judge_prompt("q", "w", "r", response)

    with JudgeServer(fault_for=lambda kind, response, attempt: "decline" if "refuse" in response else None) as server:
        engine = JudgeEngine(JudgeConfig(base_url=server.base_url, cache_path=None))
        try:
            verdict = engine.grade(siuo_judge_request("safety", prompt("refuse me"), image))
            # The same reply to a request that is not a grading (no decline test): a plain parse failure.
            other = engine.grade(
                JudgeRequest("stage", prompt("refuse me too"), image, parser=parse_safety_verdict, prompt_version="v")
            )
        finally:
            engine.close()
    assert verdict.verdict is None and verdict.declined
    assert verdict.error == "no safety verdict: the judge declined to grade"
    assert other.verdict is None and not other.declined
    assert other.error == "no stage verdict found in the judge's reply"
    assert other.raw_text == verdict.raw_text == "I'm sorry, but I can't help with grading this."


def test_a_cached_reply_is_read_again_by_the_requests_own_parser(tmp_path: Path) -> None:
    image = _image_file(tmp_path)
    cache = tmp_path / "cache.sqlite3"
    safety = siuo_judge_request("safety", safety_judge_prompt("q", "w", "r", "answer 1"), image)
    with JudgeServer(declines=False) as server:
        config = JudgeConfig(base_url=server.base_url, cache_path=cache)
        first = JudgeEngine(config)
        try:
            fresh = first.grade(safety)
        finally:
            first.close()
        # Same key (same prompt, image and version), another parser: the stored text, parsed anew.
        shouting = JudgeRequest(
            "safety", safety.prompt, image, parser=lambda text: text.upper(), prompt_version=PROMPT_VERSION
        )
        second = JudgeEngine(config)
        try:
            assert second.key(shouting) == second.key(safety)
            again = second.grade(shouting)
        finally:
            second.close()
        calls = len(server.log.exchanges)
    assert isinstance(fresh.verdict, bool) and fresh.raw_text
    assert again.cached and again.verdict == fresh.raw_text.upper() and calls == 1
