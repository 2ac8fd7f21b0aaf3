"""A loopback server speaking OpenAI's /v1/files and /v1/batches (and chat completions), for batch tests.

Batch lines are answered with exactly the replies the online judge server gives for the same
prompt (same choice of reply, same usage numbers), so online and batch judging can be compared.
``fail_first`` makes the lines whose response text contains it fail in the first batch they
appear in (an error-file line with HTTP 500), to exercise the retry of failed requests.
``hold`` keeps every batch "in_progress" until ``release()``, to interrupt a client after
submission. Also provides ``run_batch_file``: the same answers written the way
``vllm run-batch -i IN -o OUT`` writes them, for --export-batch / --import-batch tests.
"""

from __future__ import annotations

import email
import itertools
import json
import threading
from pathlib import Path
from typing import Any

from tests.helpers.chat_server import send_json
from tests.helpers.judge_server import JudgeHandler, JudgeServer, choose_reply, completion_body, parse_prompt


def answer_line(request: dict[str, Any], line_id: str, fail: bool = False) -> dict[str, Any]:
    """One batch output line for one batch input line (vLLM's BatchRequestOutput shape)."""
    if fail:
        body = {"error": {"message": "internal error while processing the batch", "type": "server_error"}}
        return {"id": line_id, "custom_id": request["custom_id"], "response": {"status_code": 500,
                "request_id": f"req-{line_id}", "body": body}, "error": None}  # fmt: skip
    content = request["body"]["messages"][0]["content"]
    prompt = next(part["text"] for part in content if part["type"] == "text")
    kind, question, response = parse_prompt(prompt)
    reply, _ = choose_reply(kind, response)
    response_data = {"status_code": 200, "request_id": f"req-{line_id}", "body": completion_body(question, reply)}
    return {"id": line_id, "custom_id": request["custom_id"], "response": response_data, "error": None}


def run_batch_file(source: Path, target: Path) -> int:
    """Answer every line of ``source`` into ``target``, as ``vllm run-batch`` would; returns lines."""
    lines = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    with open(target, "w", encoding="utf-8") as handle:
        for number, request in enumerate(lines):
            assert request["method"] == "POST" and request["url"] == "/v1/chat/completions", request
            handle.write(json.dumps(answer_line(request, f"vllm-{number}")) + "\n")
    return len(lines)


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


class _BatchHandler(JudgeHandler):
    def do_GET(self) -> None:
        state: BatchState = self.server.batch_state  # type: ignore[attr-defined]
        parts = self.path.split("?")[0].rstrip("/").split("/")
        if parts[-3:-1] == ["v1", "batches"]:
            send_json(self, 200, state.batch_view(parts[-1]))
        elif parts[-1] == "content" and parts[-3] == "files":
            data = state.files[parts[-2]]["data"]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            super().do_GET()

    def do_POST(self) -> None:
        state: BatchState = self.server.batch_state  # type: ignore[attr-defined]
        if self.path.endswith("/v1/files"):
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            message = email.message_from_bytes(f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + raw)
            parts = message.get_payload()
            upload = next(p for p in parts if p.get_param("name", header="content-disposition") == "file")
            send_json(self, 200, state.add_file(upload.get_payload(decode=True), "batch"))
        elif self.path.endswith("/v1/batches"):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            send_json(self, 200, state.create_batch(body))
        else:
            super().do_POST()


class BatchState:
    """Files and batches held by the server; batches are answered when created."""

    def __init__(self, fail_first: str | None, hold: bool) -> None:
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.created = 0
        self.lines_seen: list[str] = []
        self.fail_first = fail_first
        self.failed_once: set[str] = set()
        self.released = threading.Event()
        if not hold:
            self.released.set()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add_file(self, data: bytes, purpose: str) -> dict[str, Any]:
        with self._lock:
            file_id = f"file-{next(self._ids)}"
            self.files[file_id] = {"data": data, "purpose": purpose}
        return {"id": file_id, "object": "file", "bytes": len(data), "created_at": 0, "filename": "f.jsonl",
                "purpose": purpose, "status": "processed"}  # fmt: skip

    def create_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        requests = [json.loads(line) for line in self.files[body["input_file_id"]]["data"].decode().splitlines()]
        output, errors = [], []
        for number, request in enumerate(requests):
            self.lines_seen.append(request["custom_id"])
            text = json.dumps(request["body"])
            fail = bool(self.fail_first) and self.fail_first in text and request["custom_id"] not in self.failed_once
            if fail:
                self.failed_once.add(request["custom_id"])
            (errors if fail else output).append(answer_line(request, f"line-{number}", fail))
        with self._lock:
            self.created += 1
            batch_id = f"batch-{next(self._ids)}"
        out_id = self.add_file(_jsonl(output), "batch_output")["id"]
        err_id = self.add_file(_jsonl(errors), "batch_output")["id"] if errors else None
        self.batches[batch_id] = {"input": body["input_file_id"], "output": out_id, "errors": err_id,
                                  "total": len(requests), "failed": len(errors)}  # fmt: skip
        return self.batch_view(batch_id)

    def batch_view(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches[batch_id]
        done = self.released.is_set()
        return {
            "id": batch_id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "input_file_id": batch["input"],
            "completion_window": "24h",
            "status": "completed" if done else "in_progress",
            "created_at": 0,
            "output_file_id": batch["output"] if done else None,
            "error_file_id": batch["errors"] if done else None,
            "request_counts": {
                "total": batch["total"],
                "completed": batch["total"] - batch["failed"] if done else 0,
                "failed": batch["failed"] if done else 0,
            },
        }


class BatchServer(JudgeServer):
    """A JudgeServer that also speaks /v1/files and /v1/batches."""

    handler = _BatchHandler

    def __init__(self, fail_first: str | None = None, hold: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.state = BatchState(fail_first, hold)
        self._httpd.batch_state = self.state  # type: ignore[attr-defined]

    def release(self) -> None:
        """Let held batches complete."""
        self.state.released.set()
