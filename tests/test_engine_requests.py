"""The judge engine's text-only / JSON-reply requests (used by build and audit) beside the judge's own."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from siuo_task.judge.cache import cache_key
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine, JudgeRequest, _image
from siuo_task.prompts import PROMPT_VERSION
from tests.helpers.build_server import BuildServer


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
            other_version = engine.grade(JudgeRequest("text_judge", prompt, None, parser=lambda t: t, json_reply=True))
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
        key = engine.key(JudgeRequest("safety", "prompt", image))
    finally:
        engine.close()
    assert key == cache_key(
        model=config.model,
        endpoint=config.endpoint,
        prompt="prompt",
        image_sha256=_image(image).sha256,
        temperature=config.temperature,
        max_tokens=config.max_tokens,
        prompt_version=PROMPT_VERSION,
    )
