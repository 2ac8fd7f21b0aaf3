"""Judge configuration: the one way every entry point learns which judge to call."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from siuo_task.errors import JudgeConfigError

T = TypeVar("T", int, float)

# A pinned snapshot, so a score names the exact judge that produced it: the stand-in for the
# paper's retired gpt-4-vision-preview that published SIUO numbers since use (VLMEvalKit's SIUO
# datasets force it; see docs/judge-choice.md), and one that grades SIUO's safety prompts with
# the image where GPT-4o is reported to decline about half of them.
DEFAULT_JUDGE_MODEL = "gpt-4o-mini-2024-07-18"
# The judge one variable away (SIUO_JUDGE_MODEL=gpt-4o-2024-08-06), for comparison runs.
ALTERNATIVE_JUDGE_MODEL = "gpt-4o-2024-08-06"
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
# The paper capped the judge at 200 tokens, which can cut its step-by-step reasons off before
# the verdict; 1024 leaves room for long reasons while still bounding cost.
DEFAULT_MAX_TOKENS = 1024
DEFAULT_CONCURRENCY = 16
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_BACKOFF_S = 1.0
# Stop early when, for one kind of request (safety, effectiveness, ...), the refusals to grade
# among its first DEFAULT_DECLINE_WINDOW calls reach this share of them: such a judge's scores
# would rest on the minority it agreed to grade. 20 refusals among the first 100 calls of a
# kind: a judge refusing each grading of a kind with probability 0.5 passes with probability
# ~1.4e-10 (and is stopped at its 20th refusal, about the 40th call of that kind), one refusing
# 1 in 20 is stopped with probability ~1.1e-7 per kind (tests/test_decline_watch.py computes
# both). One half of the first 40 would let the first judge through about half the time.
DEFAULT_DECLINE_STOP = 0.2
DEFAULT_DECLINE_WINDOW = 100
# Replies that hold no verdict and are no refusal (a judge that chats instead of grading, or a
# parser the judge's format defeats) stop the pass by the same rule, counted apart.
DEFAULT_NO_VERDICT_STOP = 0.2
# The outage breaker (outage.py): this many failed attempts in a row across calls open it; it
# then holds every request, probing the server at growing intervals, for at most
# DEFAULT_OUTAGE_HOLD_S seconds before giving up (a short outage is ridden out, a dead server
# costs a few minutes and a few dozen requests, not thousands).
DEFAULT_OUTAGE_FAILURES = 10
DEFAULT_OUTAGE_HOLD_S = 150.0
DEFAULT_BATCH_POLL_S = 30.0
# How long a process waits on a provider answering only HTTP 429 (rate limited) before its
# unanswered calls become judge errors (backpressure.py): counted from the first 429 after the
# last reply, so a run that keeps getting replies between 429s never gives up. A provider's
# per-minute windows reset well within it; a daily quota does not.
DEFAULT_RATE_LIMIT_WAIT_S = 900.0
CACHE_OFF_VALUES = frozenset({"off", "none", "0", "false", "no"})
# Servers such as vLLM accept any key; the openai client refuses to start without one.
PLACEHOLDER_KEY = "EMPTY"


@dataclass(frozen=True, slots=True)
class JudgeConfig:
    """Everything that decides which judge is called and how.

    Only ``from_env`` reads the environment. ``api_key`` is excluded from repr so that it
    cannot leak into logs or exception messages.
    """

    model: str = DEFAULT_JUDGE_MODEL
    base_url: str = OPENAI_DEFAULT_BASE_URL
    api_key: str = field(default=PLACEHOLDER_KEY, repr=False)
    temperature: float = 0.0
    max_tokens: int = DEFAULT_MAX_TOKENS
    concurrency: int = DEFAULT_CONCURRENCY
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_s: float = DEFAULT_BACKOFF_S
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    cache_path: Path | None = None
    decline_stop: float | None = DEFAULT_DECLINE_STOP
    decline_window: int = DEFAULT_DECLINE_WINDOW
    no_verdict_stop: float | None = DEFAULT_NO_VERDICT_STOP
    outage_failures: int | None = DEFAULT_OUTAGE_FAILURES
    outage_hold_s: float = DEFAULT_OUTAGE_HOLD_S
    batch_poll_s: float = DEFAULT_BATCH_POLL_S
    rate_limit_wait_s: float = DEFAULT_RATE_LIMIT_WAIT_S

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, require_key: bool = True) -> JudgeConfig:
        """Build the config from SIUO_JUDGE_* (falling back to OPENAI_*) variables.

        Args:
            environ: the variables to read; the process environment when None.
            require_key: False for commands that make no call (a dry run, a batch export).

        Raises:
            JudgeConfigError: no API key and no base URL, or a malformed number.
        """
        env = os.environ if environ is None else environ
        base_url = _first(env, "SIUO_JUDGE_BASE_URL", "OPENAI_BASE_URL")
        api_key = _first(env, "SIUO_JUDGE_API_KEY", "OPENAI_API_KEY")
        if api_key is None and base_url is None and require_key:
            raise JudgeConfigError(
                "no judge API key: set SIUO_JUDGE_API_KEY (or OPENAI_API_KEY) to use OpenAI, or set "
                "SIUO_JUDGE_BASE_URL to an OpenAI-compatible server (vLLM, SGLang, ...) such as "
                "http://127.0.0.1:8000/v1"
            )
        if base_url is not None:
            _check_base_url(base_url)
        return cls(
            model=_first(env, "SIUO_JUDGE_MODEL") or DEFAULT_JUDGE_MODEL,
            base_url=(base_url or OPENAI_DEFAULT_BASE_URL).rstrip("/"),
            api_key=api_key or PLACEHOLDER_KEY,
            max_tokens=_int(env, "SIUO_JUDGE_MAX_TOKENS", DEFAULT_MAX_TOKENS),
            concurrency=_int(env, "SIUO_JUDGE_CONCURRENCY", DEFAULT_CONCURRENCY),
            timeout_s=_float(env, "SIUO_JUDGE_TIMEOUT", DEFAULT_TIMEOUT_S),
            max_attempts=_int(env, "SIUO_JUDGE_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS),
            backoff_s=_float(env, "SIUO_JUDGE_BACKOFF", DEFAULT_BACKOFF_S),
            requests_per_minute=_int(env, "SIUO_JUDGE_RPM", 0) or None,
            tokens_per_minute=_int(env, "SIUO_JUDGE_TPM", 0) or None,
            cache_path=_cache_path(env),
            decline_stop=_share_or_off(env, "SIUO_JUDGE_DECLINE_STOP", DEFAULT_DECLINE_STOP),
            decline_window=_int(env, "SIUO_JUDGE_DECLINE_WINDOW", DEFAULT_DECLINE_WINDOW),
            no_verdict_stop=_share_or_off(env, "SIUO_JUDGE_NO_VERDICT_STOP", DEFAULT_NO_VERDICT_STOP),
            outage_failures=_outage_failures(env),
            outage_hold_s=_float(env, "SIUO_JUDGE_OUTAGE_HOLD", DEFAULT_OUTAGE_HOLD_S),
            batch_poll_s=_float(env, "SIUO_JUDGE_BATCH_POLL", DEFAULT_BATCH_POLL_S),
            rate_limit_wait_s=_float(env, "SIUO_JUDGE_RATE_LIMIT_WAIT", DEFAULT_RATE_LIMIT_WAIT_S),
        )

    @property
    def endpoint(self) -> str:
        """The base URL without credentials, query or fragment: safe to record."""
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"


def _check_base_url(base_url: str) -> None:
    """A base URL the client can call: http(s), a host (a bare ``host:port`` is the usual slip)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise JudgeConfigError(
            f"SIUO_JUDGE_BASE_URL={base_url!r} is not an http(s) URL; write it in full, e.g. "
            f"http://{base_url.split('://')[-1].rstrip('/')}" + ("" if base_url.rstrip("/").endswith("/v1") else "/v1")
        )


def _first(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def _positive(env: Mapping[str, str], name: str, default: T, parse: Callable[[str], T]) -> T:
    """A positive number from ``env[name]`` (``default`` when unset); errors name the variable."""
    raw = _first(env, name)
    if raw is None:
        return default
    try:
        value = parse(raw)
    except ValueError:
        kind = "whole number" if parse is int else "number"
        raise JudgeConfigError(f"{name}={raw!r} is not a {kind}") from None
    if not value > 0:
        raise JudgeConfigError(f"{name}={raw!r} must be greater than 0")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return _positive(env, name, default, int)


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return _positive(env, name, default, float)


def default_cache_path(env: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/siuo-task/judge-cache.sqlite3`` (``~/.cache`` when unset)."""
    root = _first(env, "XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "siuo-task" / "judge-cache.sqlite3"


def _cache_path(env: Mapping[str, str]) -> Path | None:
    raw = _first(env, "SIUO_JUDGE_CACHE")
    if raw is None:
        return default_cache_path(env)
    if raw.lower() in CACHE_OFF_VALUES:
        return None
    return Path(raw).expanduser()


def decline_stop_count(share: float, window: int) -> int:
    """How many refusals among the first ``window`` replies of a kind stop the pass: the
    smallest count whose share of the window is at least ``share`` (never 0)."""
    # Rounded first so that 0.2 * 12 = 2.4000000000000004 and 0.3 * 10 read as written.
    return max(1, math.ceil(round(share * window, 9)))


def _share_or_off(env: Mapping[str, str], name: str, default: float) -> float | None:
    """A stop share (SIUO_JUDGE_DECLINE_STOP, SIUO_JUDGE_NO_VERDICT_STOP): in (0, 1], or off."""
    raw = _first(env, name)
    if raw is not None and raw.lower() in CACHE_OFF_VALUES:
        return None
    value = _float(env, name, default)
    if value > 1:
        raise JudgeConfigError(f"{name}={raw!r} must be a share between 0 and 1 (or 'off')")
    return value


def _outage_failures(env: Mapping[str, str]) -> int | None:
    """SIUO_JUDGE_OUTAGE_FAILURES: failed attempts in a row that open the breaker, or off."""
    raw = _first(env, "SIUO_JUDGE_OUTAGE_FAILURES")
    if raw is not None and raw.lower() in CACHE_OFF_VALUES:
        return None
    return _int(env, "SIUO_JUDGE_OUTAGE_FAILURES", DEFAULT_OUTAGE_FAILURES)
