"""The loopback OpenAI chat-completions server every test server builds on.

A server here is real HTTP on an ephemeral 127.0.0.1 port, run in a thread by the
``LoopbackServer`` context manager. A test server is a ``ChatHandler`` subclass answering
``chat(body)`` (the judge, the model under test, the build stages, the batch API, scripted
models inline in a test) plus the state it keeps on the server object.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


def send_json(
    handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    """Write one JSON response."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def chat_completion(
    reply: str, model: str, reply_id: str = "chatcmpl-test", prompt_tokens: int = 10, completion_tokens: int = 10
) -> dict[str, Any]:
    """A chat.completion body with one choice."""
    return {
        "id": reply_id,
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def content_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A message's content as parts (a plain string is one text part)."""
    content = message["content"]
    return content if isinstance(content, list) else [{"type": "text", "text": content}]


def message_text(message: dict[str, Any]) -> str:
    """A message's text parts, one per line."""
    return "\n".join(part["text"] for part in content_parts(message) if part.get("type") == "text")


class ChatHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Harness clients open many connections at once; the default backlog of 5 drops some.
    request_queue_size = 128
    served_model = "test-model"
    lock: threading.Lock


class ChatHandler(BaseHTTPRequestHandler):
    """Routes POSTs to ``chat_path`` (a path suffix; "" takes every path) to ``chat``, and GETs
    of ``models_path`` to the served model's listing; anything else is a 404."""

    server: ChatHTTPServer
    chat_path = "/chat/completions"
    models_path = "/models"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def read_json(self) -> Any:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def send_models(self) -> None:
        send_json(self, 200, {"object": "list", "data": [{"id": self.server.served_model, "object": "model"}]})

    def do_GET(self) -> None:
        if self.path.endswith(self.models_path):
            self.send_models()
        else:
            send_json(self, 404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        if not self.path.endswith(self.chat_path):
            send_json(self, 404, {"detail": "Not Found"})  # what vLLM answers a base URL without /v1
            return
        self.chat(self.read_json())

    def chat(self, body: dict[str, Any]) -> None:
        raise NotImplementedError


class LoopbackServer:
    """Context manager: ``handler`` served on an ephemeral loopback port; ``state`` becomes
    attributes of the server object, which handlers read as ``self.server.NAME``."""

    server_class: type[ChatHTTPServer] = ChatHTTPServer

    def __init__(self, handler: type[ChatHandler], **state: Any) -> None:
        self._httpd = self.server_class(("127.0.0.1", 0), handler)
        self._httpd.lock = threading.Lock()
        for name, value in state.items():
            setattr(self._httpd, name, value)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def httpd(self) -> Any:
        """The server object, holding the state the handler keeps."""
        return self._httpd

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
