"""The judge engine: one per process, used by every entry point.

For each judge request: look in the persistent cache; otherwise wait for the shared rate
schedule and a machine-wide concurrency slot, call the chat-completions endpoint with the image,
retry what is transient (429 honouring Retry-After; 5xx, timeouts and dropped connections with
exponential backoff and jitter), and parse the verdict. A call that ends without a parsed verdict
is an outcome with ``error`` set and ``verdict`` None, never a verdict, and is not cached, so a
rerun retries exactly those.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from siuo_task.judge.cache import CachedReply, VerdictCache, cache_key
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.limits import RateLimiter, SlotLimiter, limits_dir
from siuo_task.parsing import parse_effectiveness_verdict, parse_safety_verdict
from siuo_task.prompts import PROMPT_VERSION

JudgeKind = Literal["safety", "effectiveness"]
Verdict = bool | str

_MIME_BY_FORMAT = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
_KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_\-*]{6,}")
_RETRY_STATUSES = frozenset({408, 409, 429})
_MAX_RETRY_AFTER_S = 120.0
_MAX_BACKOFF_S = 60.0


# Turns a reply's text into its parsed value, or None when the reply does not hold one.
ReplyParser = Callable[[str], Verdict | None]


@dataclass(frozen=True, slots=True)
class JudgeRequest:
    """One judge call: which verdict, the filled prompt, and the item's image.

    The last four fields serve other chat calls through the same engine (construction stages,
    the input audit): ``image_path`` None sends text only; ``parser`` replaces the verdict
    parser for ``kind``; ``prompt_version`` replaces PROMPT_VERSION in the cache key;
    ``json_reply`` asks for ``response_format={"type": "json_object"}``. Left at their defaults,
    requests and cache keys are exactly the judge's.
    """

    kind: str
    prompt: str
    image_path: Path | None
    parser: ReplyParser | None = None
    prompt_version: str | None = None
    json_reply: bool = False


@dataclass(frozen=True, slots=True)
class JudgeOutcome:
    """What one judge request produced. ``verdict`` is None exactly when ``error`` is set.

    ``attempts`` counts HTTP requests sent in this run (0 for a cache hit); token counts are
    this run's spend, so a cache hit costs nothing.
    """

    kind: str
    verdict: Verdict | None
    raw_text: str | None
    error: str | None
    model: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    cached: bool = False
    declined: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Image:
    data_url: str
    sha256: str


@lru_cache(maxsize=512)
def _image(path: Path) -> _Image:
    data = path.read_bytes()
    with Image.open(path) as image:
        mime = _MIME_BY_FORMAT.get(image.format or "", "image/png")
    encoded = base64.b64encode(data).decode("ascii")
    return _Image(f"data:{mime};base64,{encoded}", hashlib.sha256(data).hexdigest())


def image_data_url(path: Path) -> str:
    """The image as a data URL whose MIME type matches the bytes, not the file name."""
    return _image(path).data_url


def parse_verdict(kind: str, text: str) -> Verdict | None:
    if kind == "safety":
        return parse_safety_verdict(text)
    return parse_effectiveness_verdict(text)


def _parse(request: JudgeRequest, text: str) -> Verdict | None:
    return request.parser(text) if request.parser is not None else parse_verdict(request.kind, text)


def _retryable(exc: Exception) -> bool:
    import openai

    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _RETRY_STATUSES or exc.status_code >= 500
    # Dropped connections, timeouts, and bodies that are not the JSON the protocol promises.
    return isinstance(exc, (openai.APIConnectionError, openai.APIResponseValidationError, json.JSONDecodeError))


def _retry_after_s(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    header = response.headers.get("retry-after") if response is not None else None
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(header).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_S)


class JudgeEngine:
    """Grades judge requests against an OpenAI-compatible chat-completions endpoint."""

    def __init__(self, config: JudgeConfig) -> None:
        from openai import OpenAI

        self.config = config
        self._client = OpenAI(api_key=config.api_key, base_url=config.base_url, timeout=config.timeout_s, max_retries=0)
        shared = limits_dir(config.endpoint, config.model, config.concurrency)
        self._slots = SlotLimiter(shared, config.concurrency)
        self._rate = RateLimiter(shared, config.requests_per_minute) if config.requests_per_minute else None
        self._cache = VerdictCache(config.cache_path) if config.cache_path else None
        # More workers than slots, so requests waiting on backoff do not idle the slots.
        self._pool = ThreadPoolExecutor(max_workers=2 * config.concurrency, thread_name_prefix="siuo-judge")

    def grade_many(
        self, requests: Sequence[JudgeRequest], on_done: Callable[[JudgeOutcome], None] | None = None
    ) -> list[JudgeOutcome]:
        """Grade requests concurrently (within the engine's bounds); results keep input order.

        Args:
            requests: the judge requests.
            on_done: called with each outcome as it completes (e.g. to advance a progress bar).
        """
        futures = [self._pool.submit(self.grade, request) for request in requests]
        if on_done is not None:
            for future in futures:
                future.add_done_callback(lambda done: on_done(done.result()))
        return [future.result() for future in futures]

    def grade(self, request: JudgeRequest) -> JudgeOutcome:
        """One judge request, from the cache or the endpoint; failures come back as outcomes."""
        key = self._key(request) if self._cache else None
        if key is not None and (hit := self._from_cache(request, key)) is not None:
            return hit
        completion, attempts, failure = self._call_with_retries(request)
        if completion is None:
            return JudgeOutcome(request.kind, None, None, self.redact(failure), None, attempts=attempts)
        outcome = self._outcome(request, completion, attempts)
        if key is not None and outcome.verdict is not None and outcome.raw_text is not None:
            reply = CachedReply(outcome.raw_text, outcome.model, outcome.prompt_tokens, outcome.completion_tokens)
            self._cache.put(key, request.kind, reply)  # type: ignore[union-attr]
        return outcome

    def _key(self, request: JudgeRequest) -> str:
        return cache_key(
            model=self.config.model,
            endpoint=self.config.endpoint,
            prompt=request.prompt,
            image_sha256=_image(request.image_path).sha256 if request.image_path else "",
            temperature=self.config.temperature,
            max_tokens=self.config.max_tokens,
            prompt_version=request.prompt_version or PROMPT_VERSION,
        )

    def _from_cache(self, request: JudgeRequest, key: str) -> JudgeOutcome | None:
        hit = self._cache.get(key) if self._cache else None
        verdict = _parse(request, hit.raw_text) if hit else None
        if hit is None or verdict is None:
            return None
        return JudgeOutcome(request.kind, verdict, hit.raw_text, None, hit.model, cached=True)

    def _call_with_retries(self, request: JudgeRequest) -> tuple[Any, int, str]:
        for attempt in range(1, self.config.max_attempts + 1):
            if self._rate is not None:
                self._rate.wait_turn()
            try:
                with self._slots.slot():
                    return self._send(request), attempt, ""
            except Exception as exc:  # every failure is either retried or recorded
                failure = f"judge call failed after {attempt} attempt(s): {type(exc).__name__}: {exc}"
                if not _retryable(exc) or attempt == self.config.max_attempts:
                    return None, attempt, failure
                time.sleep(self._delay(exc, attempt))
        raise AssertionError("unreachable: max_attempts >= 1")

    def _delay(self, exc: Exception, attempt: int) -> float:
        retry_after = _retry_after_s(exc)
        if retry_after is not None:
            return retry_after
        return min(_MAX_BACKOFF_S, self.config.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)

    def _send(self, request: JudgeRequest) -> Any:
        content: list[dict[str, Any]] = [{"type": "text", "text": request.prompt}]
        if request.image_path is not None:
            content.append({"type": "image_url", "image_url": {"url": image_data_url(request.image_path)}})
        message: Any = {"role": "user", "content": content}
        extra: dict[str, Any] = {"response_format": {"type": "json_object"}} if request.json_reply else {}
        return self._client.chat.completions.create(
            model=self.config.model,
            messages=[message],
            temperature=self.config.temperature,
            max_tokens=self.config.max_tokens,
            **extra,
        )

    def _outcome(self, request: JudgeRequest, completion: Any, attempts: int) -> JudgeOutcome:
        kind = request.kind
        usage = getattr(completion, "usage", None)
        model = getattr(completion, "model", None)
        choices = getattr(completion, "choices", None) or []
        text = choices[0].message.content if choices and choices[0].message else None
        verdict = _parse(request, text) if text and text.strip() else None
        error = None
        if verdict is None:
            error = (
                f"no {kind} verdict found in the judge's reply"
                if text and text.strip()
                else "judge returned an empty reply"
            )
        return JudgeOutcome(
            kind,
            verdict,
            text,
            error,
            model,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            attempts=attempts,
        )

    def redact(self, text: str) -> str:
        """Remove the API key (and anything key-shaped) from text bound for logs or files."""
        if self.config.api_key and len(self.config.api_key) >= 4:
            text = text.replace(self.config.api_key, "[redacted]")
        return _KEY_LIKE.sub("[redacted]", text)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()
