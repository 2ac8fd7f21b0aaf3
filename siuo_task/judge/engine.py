"""The judge engine: one per process, used by every entry point.

For each judge request: look in the persistent cache; otherwise wait for the shared rate
schedule and a machine-wide concurrency slot, call the chat-completions endpoint with the image,
retry what is transient (429 honouring Retry-After; 5xx, timeouts and dropped connections with
exponential backoff and jitter), and parse the verdict. A call that ends without a parsed verdict
is an outcome with ``error`` set and ``verdict`` None, never a verdict, and is not cached, so a
rerun retries exactly those.

Identical requests (same cache key) are sent once per engine: later ones wait for, or reuse,
the first one's outcome (``coalesced``). A 401/403/404 stops the pass at once (the server will
say the same to every request), and so does a judge that declines to grade too many of the first
``decline_window`` requests of one kind.

The engine knows nothing of any benchmark: each request brings its own reply parser, prompt
version (part of the cache key) and, for verdicts, its own test of a refusal to grade.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from email.utils import parsedate_to_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image

from siuo_task.errors import JudgeDeclineError, JudgeEndpointError
from siuo_task.judge.cache import CachedReply, VerdictCache, cache_key
from siuo_task.judge.config import DEFAULT_JUDGE_MODEL, JudgeConfig, decline_stop_count
from siuo_task.judge.limits import ProviderHold, RateLimiter, SlotLimiter, limits_dir
from siuo_task.judge.tokens import EXPECTED_COMPLETION_TOKENS, request_tokens

Verdict = bool | str

_MIME_BY_FORMAT = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
_KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_\-*]{6,}")
_RETRY_STATUSES = frozenset({408, 409, 429})
# A server that answers these will answer every request the same way: stop the whole pass.
_REFUSAL_STATUSES = frozenset({401, 403, 404})
_MAX_RETRY_AFTER_S = 120.0
_MAX_BACKOFF_S = 60.0


# Turns a reply's text into its parsed value, or None when the reply does not hold one.
ReplyParser = Callable[[str], Verdict | None]
# Whether a (non-empty) reply without a parsed value is a refusal to grade.
DeclineTest = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class JudgeRequest:
    """One chat call: what it is for, the filled prompt, an optional image, and how to read the reply.

    ``kind`` names the request in outcomes, errors and the decline watch (e.g. "safety");
    ``image_path`` None sends text only; ``parser`` turns the reply into its value (None: no
    value, an error outcome); ``prompt_version`` is part of the cache key, so changing a
    template's version re-asks instead of reusing old replies; ``json_reply`` asks for
    ``response_format={"type": "json_object"}``; ``is_decline`` marks a request as a verdict
    whose refusals count (``declined`` outcomes, the per-kind decline watch), None for calls
    that are not gradings (construction stages, the input audit). ``repeat`` asks the same
    request again as a distinct one (its own cache key, never coalesced with the others), e.g.
    to measure how stable a judge's verdicts are; 0 is the ordinary, first asking.
    """

    kind: str
    prompt: str
    image_path: Path | None
    parser: ReplyParser
    prompt_version: str
    json_reply: bool = False
    is_decline: DeclineTest | None = None
    repeat: int = 0


@dataclass(frozen=True, slots=True)
class JudgeOutcome:
    """What one judge request produced. ``verdict`` is None exactly when ``error`` is set.

    ``attempts`` counts HTTP requests sent in this run (0 for a cache hit); token counts are
    this run's spend, so a cache hit costs nothing. ``coalesced``: answered by an identical
    request of this engine (no call, no cost). ``declined``: the judge replied but refused to
    grade (a judge error like any reply without a verdict, counted apart).
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
    coalesced: bool = False
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


def _status(exc: BaseException) -> int | None:
    import openai

    return exc.status_code if isinstance(exc, openai.APIStatusError) else None


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


@dataclass(frozen=True, slots=True)
class _Tripped:
    """A kind's counts when its refusals reached ``limit`` among its first ``window`` calls:
    ``declines`` of the ``replies`` answered so far, ``sent`` calls of the kind begun."""

    kind: str
    declines: int
    replies: int
    sent: int
    limit: int
    window: int


@dataclass(slots=True)
class _KindCounts:
    sent: int = 0
    replies: int = 0
    declines: int = 0
    tripped: bool = False


class _DeclineWatch:
    """Counts refusals among the first ``window`` calls of each request kind, kind by kind.

    Kinds are watched apart because a judge may refuse one kind only (e.g. the safety gradings
    shown the image, while grading every effectiveness request): pooled, its share would be
    diluted by the other kind and never stop it. A call joins its kind's window when it is
    begun, not when its reply arrives: refusals are short and come back first, so a window of
    the first replies to arrive would hold more of them than the judge gives (with 16 calls in
    flight, enough to stop a judge refusing 1 in 20 ten times as often). The stop comes as soon
    as a kind's refusals reach ``decline_stop_count``, the outcome of its window then being
    certain, not when the window is full.
    """

    def __init__(self, stop_share: float | None, window: int) -> None:
        self._limit = decline_stop_count(stop_share, window) if stop_share is not None else None
        self._window = window
        self._kinds: dict[str, _KindCounts] = {}
        self._lock = threading.Lock()

    def enter(self, request: JudgeRequest) -> bool:
        """Note a call about to be made; whether it is in its kind's window (then ``record`` it)."""
        if self._limit is None or request.is_decline is None:
            return False
        with self._lock:
            counts = self._kinds.setdefault(request.kind, _KindCounts())
            if counts.sent >= self._window:
                return False
            counts.sent += 1
            return True

    def record(self, request: JudgeRequest, outcome: JudgeOutcome) -> _Tripped | None:
        """Count the reply of a call ``enter`` put in the window; the counts the first time its
        kind reaches the limit. A call that got no reply counts as no refusal."""
        if self._limit is None or outcome.raw_text is None:
            return None
        with self._lock:
            counts = self._kinds[request.kind]
            counts.replies += 1
            counts.declines += int(outcome.declined)
            if counts.tripped or counts.declines < self._limit:
                return None
            counts.tripped = True
            return _Tripped(request.kind, counts.declines, counts.replies, counts.sent, self._limit, self._window)


class JudgeEngine:
    """Grades judge requests against an OpenAI-compatible chat-completions endpoint."""

    def __init__(self, config: JudgeConfig) -> None:
        from openai import OpenAI

        self.config = config
        self._client = OpenAI(api_key=config.api_key, base_url=config.base_url, timeout=config.timeout_s, max_retries=0)
        shared = limits_dir(config.endpoint, config.model, config.concurrency)
        self._slots = SlotLimiter(shared, config.concurrency)
        self._rate = RateLimiter(shared, config.requests_per_minute) if config.requests_per_minute else None
        self._tokens = RateLimiter(shared, config.tokens_per_minute, "tpm") if config.tokens_per_minute else None
        self._hold = ProviderHold(shared)
        self._cache = VerdictCache(config.cache_path) if config.cache_path else None
        # More workers than slots, so requests waiting on backoff do not idle the slots.
        self._pool = ThreadPoolExecutor(max_workers=2 * config.concurrency, thread_name_prefix="siuo-judge")
        self._lock = threading.Lock()
        self._answered: dict[str, JudgeOutcome] = {}
        self._imported: dict[str, JudgeOutcome] = {}
        self._in_flight: dict[str, Future[JudgeOutcome]] = {}
        self._stop: Exception | None = None
        self._offline: dict[str, str] | None = None
        self._offline_cause = ""
        self._declines = _DeclineWatch(config.decline_stop, config.decline_window)
        # Adapted after a 400 that names the parameter (reasoning models take max_completion_tokens
        # and only their default temperature); see adapt.
        self.token_parameter = "max_tokens"
        self.sends_temperature = True

    def grade_many(
        self, requests: Sequence[JudgeRequest], on_done: Callable[[JudgeOutcome], None] | None = None
    ) -> list[JudgeOutcome]:
        """Grade requests concurrently (within the engine's bounds); results keep input order.

        Args:
            requests: the judge requests.
            on_done: called with each outcome as it completes (e.g. to advance a progress bar).

        Raises:
            JudgeEndpointError: the endpoint refused (401/403/404); verdicts already obtained
                stay in the cache.
            JudgeDeclineError: the judge declined most of its first requests.
        """
        futures = [self._pool.submit(self.grade, request) for request in requests]
        if on_done is not None:
            for future in futures:
                future.add_done_callback(lambda done: done.exception() is None and on_done(done.result()))
        for future in futures:
            future.exception()  # wait for all, so no call is left running after a stop
        if self._stop is not None:
            raise self._stop
        return [future.result() for future in futures]

    def grade(self, request: JudgeRequest) -> JudgeOutcome:
        """One judge request, from this engine's earlier answers, the cache or the endpoint;
        failures come back as outcomes (a refusing endpoint or judge raises, see grade_many)."""
        key = self.key(request)
        with self._lock:
            self._raise_if_stopped()
            if (imported := self._take_imported(key)) is not None:
                return imported
            # With the cache on, an identical request answered earlier is a cache hit instead.
            answered = self._answered.get(key) if self._cache is None else None
            leader = self._in_flight.get(key) if answered is None else None
            if answered is None and leader is None:
                own: Future[JudgeOutcome] = Future()
                self._in_flight[key] = own
        if answered is not None:
            return _coalesced(answered)
        if leader is not None:
            return _coalesced(leader.result())
        try:
            outcome = self._grade_once(request, key)
        except BaseException as exc:
            own.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._in_flight.pop(key, None)
        with self._lock:
            if outcome.verdict is not None:
                self._answered[key] = outcome
        own.set_result(outcome)
        return outcome

    def _grade_once(self, request: JudgeRequest, key: str) -> JudgeOutcome:
        if (hit := self._from_cache(request, key)) is not None:
            return hit
        if self._offline is not None:
            return JudgeOutcome(request.kind, None, None, self._offline.get(key, self._offline_cause), None)
        watched = self._declines.enter(request)
        completion, attempts, failure = self._call_with_retries(request)
        if completion is None:
            return JudgeOutcome(request.kind, None, None, self.redact(failure), None, attempts=attempts)
        outcome = self._outcome(request, completion, attempts)
        self.remember(key, request.kind, outcome)
        if watched:
            self._watch(request, outcome)
        return outcome

    def _watch(self, request: JudgeRequest, outcome: JudgeOutcome) -> None:
        if (tripped := self._declines.record(request, outcome)) is not None:
            self._stop_with(self._decline_error(tripped))

    def remember(self, key: str, kind: str, outcome: JudgeOutcome) -> None:
        """Store a parsed verdict in the cache (batch imports land here too)."""
        if self._cache is not None and outcome.verdict is not None and outcome.raw_text is not None:
            reply = CachedReply(outcome.raw_text, outcome.model, outcome.prompt_tokens, outcome.completion_tokens)
            self._cache.put(key, kind, reply)

    def preload(self, key: str, outcome: JudgeOutcome) -> None:
        """Make ``outcome`` (a reply from a batch job) this engine's answer for ``key``: the first
        request with that key gets it as it is, later ones as coalesced."""
        with self._lock:
            self._imported[key] = outcome

    def accept(self, request: JudgeRequest, completion: Any) -> JudgeOutcome:
        """Use a reply obtained outside grade (the probe's) as the answer to ``request``."""
        outcome = self._outcome(request, completion, attempts=1)
        key = self.key(request)
        self.remember(key, request.kind, outcome)
        self.preload(key, outcome)
        if self._declines.enter(request):  # a fresh call like any other: the first of its kind
            self._watch(request, outcome)
        return outcome

    def _take_imported(self, key: str) -> JudgeOutcome | None:
        outcome = self._imported.get(key)
        if outcome is None:
            return None
        if outcome.coalesced:
            return outcome
        self._imported[key] = _coalesced(outcome)
        return outcome

    def go_offline(self, causes: dict[str, str], default_cause: str) -> None:
        """Make no more calls: a request not answered by a batch or the cache becomes an error
        with its cause from ``causes`` (by cache key), else ``default_cause``."""
        self._offline = dict(causes)
        self._offline_cause = default_cause

    def key(self, request: JudgeRequest) -> str:
        """The cache key: everything that decides the verdict (never the API key)."""
        return cache_key(
            model=self.config.model,
            endpoint=self.config.endpoint,
            prompt=request.prompt,
            image_sha256=_image(request.image_path).sha256 if request.image_path else "",
            temperature=self.config.temperature,
            max_tokens=self.config.max_tokens,
            prompt_version=request.prompt_version,
            repeat=request.repeat,
        )

    def is_known(self, key: str) -> bool:
        """Whether ``key`` needs no call: answered by this engine or in the cache."""
        with self._lock:
            if key in self._answered or key in self._imported:
                return True
        hit = self._cache.get(key) if self._cache else None
        return hit is not None

    def _from_cache(self, request: JudgeRequest, key: str) -> JudgeOutcome | None:
        hit = self._cache.get(key) if self._cache else None
        verdict = request.parser(hit.raw_text) if hit else None
        if hit is None or verdict is None:
            return None
        return JudgeOutcome(request.kind, verdict, hit.raw_text, None, hit.model, cached=True)

    def _call_with_retries(self, request: JudgeRequest) -> tuple[Any, int, str]:
        weight = request_tokens(request.prompt, request.image_path, self.config.model) + self.config.max_tokens
        attempt = 0
        adaptations = 0
        while attempt < self.config.max_attempts:
            attempt += 1
            self._wait_for_limits(weight)
            try:
                with self._slots.slot():
                    self._raise_if_stopped()
                    # Checked with the slot held: a reply that arrived while this request waited may have set it.
                    self._hold.wait()
                    return self.send(request), attempt, ""
            except (JudgeEndpointError, JudgeDeclineError):
                raise
            except Exception as exc:  # every failure is either retried, adapted to, or recorded
                failure = f"judge call failed after {attempt} attempt(s): {type(exc).__name__}: {exc}"
                self._hold.note(_headers(exc), weight)
                if adaptations < 2 and self.adapt(exc):
                    adaptations += 1
                    attempt -= 1  # the request was malformed for this model, not a try
                    continue
                if _status(exc) in _REFUSAL_STATUSES:
                    self._stop_with(JudgeEndpointError(self.refusal_message(exc)))
                    raise self._stop from None  # type: ignore[misc]
                if not _retryable(exc) or attempt == self.config.max_attempts:
                    return None, attempt, failure
                time.sleep(self._delay(exc, attempt))
        raise AssertionError("unreachable: max_attempts >= 1")

    def _wait_for_limits(self, weight: int) -> None:
        if self._rate is not None:
            self._rate.wait_turn()
        if self._tokens is not None:
            self._tokens.wait_turn(weight)

    def _delay(self, exc: Exception, attempt: int) -> float:
        retry_after = _retry_after_s(exc)
        if retry_after is not None:
            return retry_after
        return min(_MAX_BACKOFF_S, self.config.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)

    def adapt(self, exc: Exception) -> str | None:
        """After a 400 naming an unsupported parameter, change how requests are sent; returns
        the parameter given up ("max_tokens" or "temperature"), None when nothing changed."""
        if _status(exc) != 400:
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

    def request_body(self, request: JudgeRequest) -> dict[str, Any]:
        """The chat-completions request body, as sent online and written into batch files."""
        content: list[dict[str, Any]] = [{"type": "text", "text": request.prompt}]
        if request.image_path is not None:
            content.append({"type": "image_url", "image_url": {"url": image_data_url(request.image_path)}})
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
        raw = client.chat.completions.with_raw_response.create(**self.request_body(request))
        weight = request_tokens(request.prompt, request.image_path, self.config.model) + EXPECTED_COMPLETION_TOKENS
        self._hold.note(raw.headers, weight)
        return raw.parse()

    def outcome_from_body(self, request: JudgeRequest, body: dict[str, Any], attempts: int) -> JudgeOutcome:
        """An outcome from a chat-completion JSON body (a batch job's output line)."""
        from openai.types.chat import ChatCompletion

        return self._outcome(request, ChatCompletion.model_validate(body), attempts)

    def _outcome(self, request: JudgeRequest, completion: Any, attempts: int) -> JudgeOutcome:
        kind = request.kind
        usage = getattr(completion, "usage", None)
        model = getattr(completion, "model", None)
        choices = getattr(completion, "choices", None) or []
        text = choices[0].message.content if choices and choices[0].message else None
        verdict = request.parser(text) if text and text.strip() else None
        error = None
        # Only verdict requests (those with a decline test) count refusals to grade.
        declined = verdict is None and bool(text) and request.is_decline is not None and request.is_decline(text or "")
        if verdict is None:
            if declined:
                error = f"no {kind} verdict: the judge declined to grade"
            elif text and text.strip():
                error = f"no {kind} verdict found in the judge's reply"
            else:
                error = "judge returned an empty reply"
        return JudgeOutcome(
            kind,
            verdict,
            text,
            error,
            model,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            attempts=attempts,
            declined=declined,
        )

    def _stop_with(self, error: Exception) -> None:
        with self._lock:
            if self._stop is None:
                self._stop = error

    def _raise_if_stopped(self) -> None:
        if self._stop is not None:
            raise self._stop

    def _decline_error(self, tripped: _Tripped) -> JudgeDeclineError:
        kind, config = tripped.kind, self.config
        kept = "verdicts so far are cached" if config.cache_path else "the cache is off, so nothing was kept"
        return JudgeDeclineError(
            f"the judge {config.model} at {config.endpoint} declined {tripped.declines} of the {tripped.replies} "
            f"{kind} gradings it answered (of its first {tripped.sent} {kind} calls), so its {kind} scores would "
            f"rest on the few it agreed to grade; stopped early ({kept}; the stop is at {tripped.limit} refusals "
            f"among the first {tripped.window} calls of one kind). Use a judge that grades "
            f"safety content with images: {self._other_judges()}. "
            "To go on anyway, set SIUO_JUDGE_DECLINE_STOP=off."
        )

    def _other_judges(self) -> str:
        local = (
            "a local vision model served by vLLM (SIUO_JUDGE_BASE_URL=http://127.0.0.1:8000/v1 "
            "SIUO_JUDGE_MODEL=Qwen/Qwen2.5-VL-72B-Instruct)"
        )
        if self.config.model == DEFAULT_JUDGE_MODEL:
            return f"e.g. {local}, checked against this judge with siuo-eval agreement"
        return f"e.g. the default judge (unset SIUO_JUDGE_MODEL: {DEFAULT_JUDGE_MODEL} on OpenAI), or {local}"

    def refusal_message(self, exc: BaseException) -> str:
        """What an endpoint failure means (401/403/404, another status, unreachable), naming the
        endpoint and the cause; never "run again"."""
        where = f"the judge endpoint {self.config.endpoint}"
        detail = self.redact(_server_message(exc))
        status = _status(exc)
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
        return _KEY_LIKE.sub("[redacted]", text)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()


def _coalesced(outcome: JudgeOutcome) -> JudgeOutcome:
    """The answer of an identical request, as this request's outcome: no call, no cost."""
    return replace(outcome, attempts=0, prompt_tokens=0, completion_tokens=0, cached=False, coalesced=True)


def _headers(exc: Exception) -> Any:
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


@lru_cache(maxsize=4)
def shared_engine(config: JudgeConfig) -> JudgeEngine:
    """One engine per judge configuration per process, shared by every thread and every
    adapter hook (coalescing and the cache of answered requests then span a whole run)."""
    return JudgeEngine(config)
