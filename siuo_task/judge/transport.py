"""The judge's HTTP side: the chat-completions request body (image as a data URL), one call,
the parameters a model rejects (adapted after a 400 that names them), what a failure means
(retry, wait, or stop, and the message naming the endpoint and cause), and keys kept out of
every message. No cache, bound or retry loop here: the engine decides when to call."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from siuo_task.judge.backpressure import Backpressure
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.limits import ProviderHold
from siuo_task.judge.request import JudgeOutcome, JudgeRequest, read_completion
from siuo_task.judge.tokens import EXPECTED_COMPLETION_TOKENS, request_tokens

_MIME_BY_FORMAT = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_\-*]{6,}")
_RETRY_STATUSES = frozenset({408, 409, 429})
# A server that answers these will answer every request the same way: stop the whole pass.
REFUSAL_STATUSES = frozenset({401, 403, 404})
_MAX_RETRY_AFTER_S = 120.0


@dataclass(frozen=True, slots=True)
class EncodedImage:
    data_url: str
    sha256: str


@lru_cache(maxsize=512)
def encoded_image(path: Path) -> EncodedImage:
    """The image as a data URL whose MIME type matches the bytes, not the file name, and the
    bytes' sha256 (part of the cache key)."""
    data = path.read_bytes()
    with Image.open(path) as image:
        mime = _MIME_BY_FORMAT.get(image.format or "", "image/png")
    encoded = base64.b64encode(data).decode("ascii")
    return EncodedImage(f"data:{mime};base64,{encoded}", hashlib.sha256(data).hexdigest())


def http_status(exc: BaseException) -> int | None:
    import openai

    return exc.status_code if isinstance(exc, openai.APIStatusError) else None


def is_retryable(exc: Exception) -> bool:
    import openai

    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _RETRY_STATUSES or exc.status_code >= 500
    # Dropped connections, timeouts, and bodies that are not the JSON the protocol promises.
    return isinstance(exc, (openai.APIConnectionError, openai.APIResponseValidationError, json.JSONDecodeError))


def is_server_failure(exc: Exception) -> bool:
    """A failure that says the server is unwell rather than this request (5xx, timeouts,
    dropped connections, bodies that are not JSON): what the outage breaker counts."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        return exc.status_code >= 500
    return isinstance(exc, (openai.APIConnectionError, openai.APIResponseValidationError, json.JSONDecodeError))


def is_refusal(exc: BaseException) -> bool:
    """A failure every request would get the same way (401/403/404, an account out of quota):
    the pass stops at once."""
    return http_status(exc) in REFUSAL_STATUSES or is_out_of_quota(exc)


def is_rate_limited(exc: BaseException) -> bool:
    """A 429 that asks to slow down (back-pressure, see backpressure.py), not one saying the
    account has no quota left (OpenAI's ``insufficient_quota``) nor that this one request is
    larger than the whole per-minute token limit ("Request too large"), which waiting never
    clears (the latter is retried as a failed try, then a judge error)."""
    if http_status(exc) != 429 or is_out_of_quota(exc):
        return False
    return "request too large" not in f"{exc} {_server_message(exc)}".lower()


def is_out_of_quota(exc: BaseException) -> bool:
    if http_status(exc) != 429:
        return False
    body = getattr(exc, "body", None)
    error = body.get("error", body) if isinstance(body, dict) else None
    fields = (error.get("code"), error.get("type")) if isinstance(error, dict) else ()
    return "insufficient_quota" in fields or "insufficient_quota" in str(exc)


def retry_after_s(exc: BaseException, cap_s: float = _MAX_RETRY_AFTER_S) -> float | None:
    """How long the server asks to wait: ``retry-after-ms`` (milliseconds), else ``Retry-After``
    (seconds or an HTTP date), at most ``cap_s``; None when it sent neither (or nothing readable)."""
    headers = response_headers(exc)
    if headers is None:
        return None
    seconds: float | None = None
    if milliseconds := headers.get("retry-after-ms"):
        try:
            seconds = float(milliseconds) / 1000.0
        except ValueError:
            seconds = None
    header = headers.get("retry-after")
    if seconds is None and header:
        try:
            seconds = float(header)
        except ValueError:
            try:
                seconds = parsedate_to_datetime(header).timestamp() - time.time()
            except (TypeError, ValueError, IndexError):
                return None
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), cap_s)


def response_headers(exc: BaseException) -> Any:
    response = getattr(exc, "response", None)
    return response.headers if response is not None else None


def _server_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else None
        if message:
            return str(message)
    return str(exc)


def outcome_from_body(request: JudgeRequest, body: dict[str, Any], attempts: int) -> JudgeOutcome:
    """An outcome from a chat-completion JSON body (a batch job's output line)."""
    from openai.types.chat import ChatCompletion

    return read_completion(request, ChatCompletion.model_validate(body), attempts)


class Transport(Protocol):
    """How an engine sends one judge request: over HTTP (ChatTransport), or through a harness's
    own model API (Inspect's grader role), so the engine's cache, retries and watches are the
    same whichever sends. ``send`` returns an object shaped like a chat completion
    (``choices[0].message.content``, ``usage``, ``model``); failures are raised as the openai
    client's errors where the sender has them (what the engine's retry rules read)."""

    def request_body(self, request: JudgeRequest) -> dict[str, Any]: ...

    def send(self, request: JudgeRequest, timeout_s: float | None = None) -> Any: ...

    def adapt(self, exc: Exception) -> str | None: ...

    def refusal_message(self, exc: BaseException) -> str: ...

    def redact(self, text: str) -> str: ...

    def close(self) -> None: ...


class ChatTransport:
    """Sends judge requests to one OpenAI-compatible chat-completions endpoint."""

    def __init__(self, config: JudgeConfig, hold: ProviderHold, pressure: Backpressure | None = None) -> None:
        from openai import OpenAI

        self.config = config
        self._client = OpenAI(api_key=config.api_key, base_url=config.base_url, timeout=config.timeout_s, max_retries=0)
        self._hold = hold
        self._pressure = pressure
        self._lock = threading.Lock()
        # Adapted after a 400 that names the parameter (reasoning models take max_completion_tokens
        # and only their default temperature); see adapt.
        self.token_parameter = "max_tokens"
        self.sends_temperature = True

    def request_body(self, request: JudgeRequest) -> dict[str, Any]:
        """The chat-completions request body, as sent online and written into batch files."""
        content: list[dict[str, Any]] = [{"type": "text", "text": request.prompt}]
        if request.image_path is not None:
            content.append({"type": "image_url", "image_url": {"url": encoded_image(request.image_path).data_url}})
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": [{"role": "user", "content": content}],
            self.token_parameter: self.config.max_tokens,
        }
        if self.sends_temperature:
            body["temperature"] = self.config.temperature
        if request.json_reply:
            body["response_format"] = {"type": "json_object"}
        return body

    def send(self, request: JudgeRequest, timeout_s: float | None = None) -> Any:
        """One HTTP call for ``request`` (no cache, bound or retry); the parsed completion."""
        client = self._client.with_options(timeout=timeout_s) if timeout_s else self._client
        sent_at = time.monotonic()
        try:
            raw = client.chat.completions.with_raw_response.create(**self.request_body(request))
        except Exception as exc:
            if self._pressure is not None:
                self._pressure.read_headers(response_headers(exc), sent_at)
            raise
        weight = request_tokens(request.prompt, request.image_path, self.config.model) + EXPECTED_COMPLETION_TOKENS
        self._hold.note(raw.headers, weight)
        if self._pressure is not None:
            self._pressure.read_headers(raw.headers, sent_at)
        return raw.parse()

    def adapt(self, exc: Exception) -> str | None:
        """After a 400 naming an unsupported parameter, change how requests are sent; returns
        the parameter given up ("max_tokens" or "temperature"), None when nothing changed."""
        if http_status(exc) != 400:
            return None
        message = str(exc).lower()
        # A request built before another thread adapted gets the same 400: retry it as it is now sent.
        with self._lock:
            if "'max_tokens'" in message.replace('"', "'").replace("`", "'"):
                self.token_parameter = "max_completion_tokens"
                return "max_tokens"
            if "temperature" in message:
                self.sends_temperature = False
                return "temperature"
        return None

    def refusal_message(self, exc: BaseException) -> str:
        """What an endpoint failure means (401/403/404, another status, unreachable), naming the
        endpoint and the cause; never "run again"."""
        where = f"the judge endpoint {self.config.endpoint}"
        detail = self.redact(_server_message(exc))
        status = http_status(exc)
        if is_out_of_quota(exc):
            return (
                f"{where} answered HTTP 429 insufficient_quota ({detail}): the account has no quota or credit "
                "left, which waiting does not change; add credit or use another key (SIUO_JUDGE_API_KEY)"
            )
        if status in (401, 403):
            return (
                f"{where} refused the API key (HTTP {status}: {detail}); set SIUO_JUDGE_API_KEY "
                "(or OPENAI_API_KEY) to a key this endpoint accepts"
            )
        if status == 404:
            if "model" in detail.lower():
                return (
                    f"{where} does not serve the model '{self.config.model}' (HTTP 404: {detail}); set "
                    "SIUO_JUDGE_MODEL to a model it serves"
                )
            return (
                f"{where} has no chat-completions API (HTTP 404: {detail}); does SIUO_JUDGE_BASE_URL end in "
                "'/v1'? (e.g. http://127.0.0.1:8000/v1)"
            )
        cause = exc.__cause__ or exc.__context__
        if status is None and cause is not None:
            detail = f"{detail} {self.redact(str(cause))}".strip()
        if status is not None:
            return f"{where} answered HTTP {status}: {detail}"
        return f"cannot reach {where} ({type(exc).__name__}: {detail}); is the server up and the URL right?"

    def redact(self, text: str) -> str:
        """Remove the API key (and anything key-shaped) from text bound for logs or files."""
        if self.config.api_key and len(self.config.api_key) >= 4:
            text = text.replace(self.config.api_key, "[redacted]")
        return KEY_LIKE.sub("[redacted]", text)

    def close(self) -> None:
        self._client.close()
