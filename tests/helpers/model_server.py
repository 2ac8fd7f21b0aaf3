"""A chat-completions server on 127.0.0.1 playing the model under test (for VLMEvalKit's API
model class): deterministic replies that differ per sample, and MCQ letters for MCQ prompts."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

from tests.helpers.chat_server import (
    ChatHandler,
    ChatHTTPServer,
    LoopbackServer,
    chat_completion,
    content_parts,
    message_text,
    send_json,
)

MCQ_MARKER = "Answer the following multi-choice questions"
# lm-eval's image placeholder, which its text-only API model class sends as text.
IMAGE_PLACEHOLDER = "<image>"


def reply_for(prompt: str, sample: int) -> str:
    digest = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
    if prompt.startswith(MCQ_MARKER):
        return ["(A)", "B", "The answer is (C).", "D.", "I am not sure."][digest % 5]
    if digest % 7 == 0 and sample == 0:
        return ""  # an empty response now and then
    return f"Sample {sample}: please be careful here; reply {digest % 1000}."


class _Handler(ChatHandler):
    server: _ModelHTTPServer
    chat_path = ""  # whatever path the harness's client posts to

    def chat(self, body: dict[str, Any]) -> None:
        parts = content_parts(body["messages"][-1])
        prompt = message_text(body["messages"][-1])
        with self.server.lock:
            sample = self.server.seen[prompt]
            self.server.seen[prompt] += 1
            self.server.images += sum(1 for part in parts if part.get("type") == "image_url")
            self.server.temperatures[(prompt, body.get("temperature"))] += 1
            if self.server.per_settings:
                key = (prompt, body.get("temperature"), body.get("max_tokens", body.get("max_completion_tokens")))
                sample = self.server.samples[key]
                self.server.samples[key] += 1
        if self.server.per_settings:
            prompt = prompt.removeprefix(IMAGE_PLACEHOLDER)
        reply = reply_for(prompt, sample if self.server.sampled else 1)
        if not reply:
            with self.server.lock:
                self.server.empty_replies += 1
        send_json(self, 200, chat_completion(reply, body.get("model", "test-model"), "cmpl-model"))

    def do_GET(self) -> None:  # /v1/models, which some clients ask for first; any path answers
        self.send_models()


class _ModelHTTPServer(ChatHTTPServer):
    seen: Counter
    samples: Counter
    temperatures: Counter
    images = 0
    empty_replies = 0
    per_settings = False
    sampled = True


class ModelServer(LoopbackServer):
    """Context manager: the model under test on an ephemeral loopback port."""

    server_class = _ModelHTTPServer

    def __init__(self, per_settings: bool = False, sampled: bool = True) -> None:
        """Args:
        sampled: False plays a greedy model: the same reply to every asking of a prompt.
        per_settings: number the samples of a prompt per (prompt, temperature, max tokens), and
            read a prompt after a leading lm-eval image placeholder. Two runs of several tasks
            that share prompts (siuo_gen and siuo_gen_greedy) then get the same responses per
            task, whatever order the harness sends its requests in.
        """
        super().__init__(
            _Handler,
            seen=Counter(),
            samples=Counter(),
            temperatures=Counter(),
            per_settings=per_settings,
            sampled=sampled,
            empty_replies=0,
        )

    @property
    def empty_replies(self) -> int:
        """How many replies were empty (a client may ask again after one)."""
        return self._httpd.empty_replies

    @property
    def prompts(self) -> Counter:
        return self._httpd.seen

    @property
    def temperatures(self) -> Counter:
        """Requests by (prompt, temperature sent; None when the client sent none)."""
        return self._httpd.temperatures

    @property
    def images(self) -> int:
        return self._httpd.images
