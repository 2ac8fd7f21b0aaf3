"""A chat-completions server on 127.0.0.1 playing the model under test (for VLMEvalKit's API
model class): deterministic replies that differ per sample, and MCQ letters for MCQ prompts."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.helpers.judge_server import send_json

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


class _Handler(BaseHTTPRequestHandler):
    server: _ModelHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        content = body["messages"][-1]["content"]
        parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
        prompt = "\n".join(part["text"] for part in parts if part.get("type") == "text")
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
        reply = reply_for(prompt, sample)
        if not reply:
            with self.server.lock:
                self.server.empty_replies += 1
        payload = {
            "id": "cmpl-model",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "test-model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }
        send_json(self, 200, payload)

    def do_GET(self) -> None:  # /v1/models, which some clients ask for first
        send_json(self, 200, {"object": "list", "data": [{"id": "test-model", "object": "model"}]})


class _ModelHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    seen: Counter
    samples: Counter
    lock: threading.Lock
    images = 0
    empty_replies = 0
    per_settings = False


class ModelServer:
    """Context manager: the model under test on an ephemeral loopback port."""

    def __init__(self, per_settings: bool = False) -> None:
        """Args:
        per_settings: number the samples of a prompt per (prompt, temperature, max tokens), and
            read a prompt after a leading lm-eval image placeholder. Two runs of several tasks
            that share prompts (siuo_gen and siuo_gen_greedy) then get the same responses per
            task, whatever order the harness sends its requests in.
        """
        self._httpd = _ModelHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.seen = Counter()
        self._httpd.samples = Counter()
        self._httpd.temperatures = Counter()
        self._httpd.per_settings = per_settings
        self._httpd.empty_replies = 0
        self._httpd.lock = threading.Lock()
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

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

    def __enter__(self) -> ModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
