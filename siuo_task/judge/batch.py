"""Judging through batch engines: the OpenAI Batch API, and files for ``vllm run-batch``.

One request/response format serves both. A request line is
``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}`` where ``body`` is
exactly what the online engine sends and ``custom_id`` is the request's cache key (so
identical requests are sent once). An output line is
``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}`` (the OpenAI
Batch API's output and error files, and what ``vllm run-batch -i in.jsonl -o out.jsonl``
writes). Replies are read with the same parser as online replies and land in the same cache,
so online, batch and exported/imported judging of the same replies give identical results.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from siuo_task.errors import DataError, JudgeEndpointError
from siuo_task.judge.engine import JudgeEngine
from siuo_task.judge.request import JudgeRequest
from siuo_task.judge.transport import http_status, outcome_from_body

BATCH_URL: Final = "/v1/chat/completions"
FINISHED = frozenset({"completed", "failed", "expired", "cancelled"})
STATE_FILE = "openai-batch.json"
Log = Callable[[str], None]


def pending_requests(engine: JudgeEngine, requests: Iterable[JudgeRequest]) -> dict[str, JudgeRequest]:
    """Distinct requests (by cache key) that the cache and the engine cannot answer yet."""
    pending: dict[str, JudgeRequest] = {}
    for request in requests:
        key = engine.key(request)
        if key not in pending and not engine.is_known(key):
            pending[key] = request
    return pending


def request_lines(engine: JudgeEngine, pending: dict[str, JudgeRequest]) -> list[str]:
    return [
        json.dumps(
            {"custom_id": key, "method": "POST", "url": BATCH_URL, "body": engine.transport.request_body(request)}
        )
        for key, request in pending.items()
    ]


def export_batch(engine: JudgeEngine, requests: Sequence[JudgeRequest], path: Path) -> int:
    """Write the calls still needed as a batch input JSONL; returns the number of lines."""
    lines = request_lines(engine, pending_requests(engine, requests))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)


@dataclass
class ImportSummary:
    """What one batch output file gave: replies used, failed lines (custom_id -> cause), foreign lines."""

    replies: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    unknown: int = 0


def import_lines(
    engine: JudgeEngine, requests: Sequence[JudgeRequest], lines: Iterable[tuple[int, str]], source: str
) -> ImportSummary:
    """Turn batch output lines into this engine's answers (and cache entries).

    Raises:
        DataError: a line that is not JSON or has no custom_id, naming ``source`` and the line.
    """
    by_key = {engine.key(request): request for request in requests}
    summary = ImportSummary()
    for number, line in lines:
        try:
            row = json.loads(line)
            custom_id = row["custom_id"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"'{source}' line {number} is not a batch output line ({exc})") from None
        request = by_key.get(custom_id)
        if request is None:
            summary.unknown += 1
            continue
        response = row.get("response") or {}
        body = response.get("body") if isinstance(response, dict) else None
        if row.get("error") or response.get("status_code", 200) != 200 or not isinstance(body, dict):
            summary.failed[custom_id] = engine.transport.redact(_line_error(row))
            continue
        outcome = outcome_from_body(request, body, attempts=1)
        engine.remember(custom_id, request.kind, outcome)
        engine.preload(custom_id, outcome)
        summary.replies += 1
    return summary


def import_batch(engine: JudgeEngine, requests: Sequence[JudgeRequest], path: Path) -> ImportSummary:
    """Read a batch output JSONL (OpenAI's or ``vllm run-batch``'s) into the engine."""
    if not path.is_file():
        raise DataError(f"batch output file '{path}' does not exist")
    text = path.read_text(encoding="utf-8")
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    return import_lines(engine, requests, lines, str(path))


def _line_error(row: dict[str, Any]) -> str:
    error = row.get("error")
    if error:
        return f"batch error: {json.dumps(error)[:300]}"
    response = row.get("response") or {}
    body = response.get("body")
    message = body.get("error", body) if isinstance(body, dict) else body
    return f"batch request failed (HTTP {response.get('status_code')}): {json.dumps(message)[:300]}"


class OpenAIBatchRunner:
    """Runs the pending calls as OpenAI Batch API jobs through the real ``openai`` client.

    Upload (files.create, purpose "batch"), batches.create, poll batches.retrieve, download
    the output and error files (files.content). The batch id is stored in ``state_dir`` right
    after submission, so a crash resumes the same batch instead of paying for a second one.
    Requests that failed inside a batch go into a new batch, up to ``max_attempts`` rounds.
    """

    def __init__(self, engine: JudgeEngine, state_dir: Path, log: Log) -> None:
        from openai import OpenAI

        config = engine.config
        self.engine = engine
        self.state_path = state_dir / STATE_FILE
        self.log = log
        self._client = OpenAI(api_key=config.api_key, base_url=config.base_url, timeout=config.timeout_s)

    def run(self, requests: Sequence[JudgeRequest]) -> dict[str, str]:
        """Judge ``requests`` by batch; returns custom_id -> cause for calls still failing."""
        failed: dict[str, str] = {}
        for round_number in range(1, self.engine.config.max_attempts + 1):
            state = self._load_state()
            if state is None:
                pending = pending_requests(self.engine, requests)
                if not pending:
                    break
                state = self._submit(pending, round_number)
            else:
                self.log(f"resuming OpenAI batch {state['batch_id']} (recorded in {self.state_path})")
            summary = self._finish(state["batch_id"], requests)
            failed = summary.failed
            self.state_path.unlink(missing_ok=True)
            if not failed:
                break
            self.log(f"{len(failed)} request(s) failed inside the batch; submitting them again")
        return failed

    def _load_state(self) -> dict[str, Any] | None:
        if not self.state_path.is_file():
            return None
        return json.loads(self.state_path.read_text(encoding="utf-8"))

    def _submit(self, pending: dict[str, JudgeRequest], round_number: int) -> dict[str, Any]:
        data = "".join(line + "\n" for line in request_lines(self.engine, pending)).encode("utf-8")
        uploaded = self._call(lambda: self._client.files.create(file=("siuo-judge.jsonl", data), purpose="batch"))
        batch = self._call(
            lambda: self._client.batches.create(input_file_id=uploaded.id, endpoint=BATCH_URL, completion_window="24h")
        )
        state = {"batch_id": batch.id, "input_file_id": uploaded.id, "requests": len(pending), "round": round_number}
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        self.state_path.write_text(json.dumps(state), encoding="utf-8")
        self.log(f"submitted OpenAI batch {batch.id} with {len(pending)} request(s); id stored in {self.state_path}")
        return state

    def _finish(self, batch_id: str, requests: Sequence[JudgeRequest]) -> ImportSummary:
        batch = self._call(lambda: self._client.batches.retrieve(batch_id))
        last_status = ""
        while batch.status not in FINISHED:
            if batch.status != last_status:
                counts = batch.request_counts
                done = f" ({counts.completed}/{counts.total} done)" if counts else ""
                self.log(f"batch {batch_id}: {batch.status}{done}")
                last_status = batch.status
            time.sleep(self.engine.config.batch_poll_s)
            batch = self._call(lambda: self._client.batches.retrieve(batch_id))
        self.log(f"batch {batch_id}: {batch.status}")
        if batch.status == "failed" and not batch.output_file_id and not batch.error_file_id:
            reported = batch.errors.data if batch.errors and batch.errors.data else []
            errors = "; ".join(error.message or "" for error in reported)
            errors = self.engine.transport.redact(errors)
            raise JudgeEndpointError(f"OpenAI batch {batch_id} at {self.engine.config.endpoint} failed: {errors}")
        summary = ImportSummary()
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                text = self._download(file_id)
                lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
                part = import_lines(self.engine, requests, lines, f"batch {batch_id} file {file_id}")
                summary.replies += part.replies
                summary.failed.update(part.failed)
        # Requests the batch never answered (expired, cancelled) count as failed too.
        for key in pending_requests(self.engine, requests):
            summary.failed.setdefault(key, f"no answer in batch {batch_id} (status {batch.status})")
        return summary

    def _download(self, file_id: str) -> str:
        return str(self._call(lambda: self._client.files.content(file_id).text))

    def _call(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except Exception as exc:
            status = http_status(exc)
            if status is None and not _is_connection_error(exc):
                raise
            if status == 404:
                raise JudgeEndpointError(
                    f"the judge endpoint {self.engine.config.endpoint} has no OpenAI Batch API (HTTP 404 on "
                    f"files/batches: {self.engine.transport.redact(str(exc))}); for a local server use "
                    "--export-batch and "
                    "`vllm run-batch`, then --import-batch"
                ) from None
            raise JudgeEndpointError(self.engine.transport.refusal_message(exc)) from None

    def close(self) -> None:
        self._client.close()


def _is_connection_error(exc: Exception) -> bool:
    import openai

    return isinstance(exc, openai.APIConnectionError)
