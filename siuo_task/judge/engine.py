"""The judge engine: one per process, used by every entry point.

For each judge request: look in the persistent cache; otherwise wait for the shared rate
schedule, this process's back-pressure (``backpressure.py``: the pause, window and pace a
provider's 429s set) and a machine-wide concurrency slot, call the chat-completions endpoint
with the image, retry what is transient (a 429 after the back-pressure's wait, spending no
attempt, until SIUO_JUDGE_RATE_LIMIT_WAIT runs out; 5xx, timeouts and dropped connections with
exponential backoff and jitter), and parse the verdict. A call that ends without a parsed verdict
is an outcome with ``error`` set and ``verdict`` None, never a verdict, and is not cached, so a
rerun retries exactly those.

Identical requests (same cache key) are sent once per engine: later ones wait for, or reuse,
the first one's outcome (``coalesced``). Across processes sharing the cache, a key is claimed in
the cache before its call (``cache.py``); a process that finds another's live claim waits for
the verdict to land in the cache instead of paying for the same call (a bounded wait: then it
calls itself); a reply without a verdict is shared through the claim the same way. A
401/403/404 stops the pass at once (the server will say the same to every request), and so does
a judge that declines to grade too many of the first ``decline_window`` requests of one kind
(``declines.py``).

Replies with no verdict are watched per kind by the same rule (``declines.py``); server failures
in a row across calls open the outage breaker (``outage.py``), which holds every request while
it probes the server and gives up after a bounded time. SIGINT / SIGTERM while the main thread
waits in ``grade_many`` stop the pass (``interrupts.py``): no new call, queued calls cancelled,
calls in flight given ``INTERRUPT_GRACE_S`` seconds; every verdict received is already cached.

The requests and outcomes are in ``request.py``, the HTTP call, parameter adaptation and
failure messages in ``transport.py``; the engine decides when to call: cache, coalescing,
bounds, retries and stops.
"""

from __future__ import annotations

import contextvars
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from siuo_task.errors import JudgeEndpointError, SiuoError, raised_again
from siuo_task.judge.backpressure import Backpressure, RateLimitGiveUp
from siuo_task.judge.cache import CachedReply, ClaimHolder, VerdictCache, cache_key
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.declines import DeclineWatch, stop_error
from siuo_task.judge.interrupts import JudgeInterrupted, as_interrupted, stop_on_signals
from siuo_task.judge.limits import ProviderHold, RateLimiter, SlotLimiter, limits_dir
from siuo_task.judge.notices import notice_once
from siuo_task.judge.outage import OutageBreaker, OutageError
from siuo_task.judge.request import JudgeOutcome, JudgeRequest, read_completion
from siuo_task.judge.tokens import request_tokens
from siuo_task.judge.transport import (
    ChatTransport,
    Transport,
    encoded_image,
    is_rate_limited,
    is_refusal,
    is_retryable,
    is_server_failure,
    response_headers,
    retry_after_s,
)

_MAX_BACKOFF_S = 60.0
# How often a request waiting for another process's verdict looks in the cache.
CLAIM_POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class CallTally:
    """What an engine's calls came to, so a command can say whether running it again helps:
    ``verdicts`` stored in the cache, ``without_reply`` calls that failed after their retries
    (a rerun retries them), ``without_verdict`` replies holding no verdict, refusals included
    (a rerun would buy the same replies)."""

    verdicts: int = 0
    without_reply: int = 0
    without_verdict: int = 0


# How long calls already sent may still finish (and be cached) after an interrupt.
INTERRUPT_GRACE_S = 3.0


class JudgeEngine:
    """Grades judge requests against an OpenAI-compatible chat-completions endpoint.

    ``errors_after_outage``: when the outage breaker gives up, end every request not yet
    answered as an error outcome naming the outage (a harness run then keeps its responses and
    says how to finish the scoring) instead of stopping the pass with OutageError.
    """

    def __init__(
        self, config: JudgeConfig, transport: Transport | None = None, errors_after_outage: bool = False
    ) -> None:
        """``transport``: what sends the calls; an HTTP client for ``config``'s endpoint when None."""
        self.config = config
        self._errors_after_outage = errors_after_outage
        shared = limits_dir(config.endpoint, config.model, config.concurrency)
        self._slots = SlotLimiter(shared, config.concurrency)
        self._rate = RateLimiter(shared, config.requests_per_minute) if config.requests_per_minute else None
        self._tokens = RateLimiter(shared, config.tokens_per_minute, "tpm") if config.tokens_per_minute else None
        self._hold = ProviderHold(shared)
        # How fast this process sends, adapted to the provider's 429s (its own, per process: it
        # needs nothing shared with the other senders of one limit).
        self.pressure = Backpressure(config.endpoint, config.concurrency, config.rate_limit_wait_s, config.backoff_s)
        self.transport: Transport = transport or ChatTransport(config, self._hold, self.pressure)
        self._cache = VerdictCache(config.cache_path) if config.cache_path else None
        self._claimed: set[str] = set()  # keys this engine claimed in the shared cache
        # More workers than slots, so requests waiting on backoff do not idle the slots.
        self._pool = ThreadPoolExecutor(max_workers=2 * config.concurrency, thread_name_prefix="siuo-judge")
        self._lock = threading.Lock()
        self._answered: dict[str, JudgeOutcome] = {}
        self._imported: dict[str, JudgeOutcome] = {}
        self._in_flight: dict[str, Future[JudgeOutcome]] = {}
        self._stop: BaseException | None = None
        self._offline: dict[str, str] | None = None
        self._offline_cause = ""
        self._declines = DeclineWatch(config.decline_stop, config.decline_window, config.no_verdict_stop)
        self._outage = OutageBreaker(config.endpoint, config.outage_failures, config.outage_hold_s, config.backoff_s)
        # Set on a stop: backoff sleeps end at once.
        self._wake = threading.Event()
        self._interrupted = False
        # What this engine's calls came to, for a command's closing hint: whether a rerun can help.
        self.verdicts_received = 0
        self.calls_without_reply = 0
        self.replies_without_verdict = 0

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
            JudgeDeclineError: the judge declined most of its first requests of one kind.
            JudgeNoVerdictError: most of its first replies of one kind held no verdict.
            OutageError: the server kept failing past the outage hold (see errors_after_outage).
            JudgeInterrupted: SIGINT / SIGTERM in the main thread (see interrupts.py).
        """
        futures = self._grade_all(requests, on_done)
        if self._stop is not None:
            raise raised_again(self._stop)
        return [future.result() for future in futures]

    def grade_until_stopped(
        self, requests: Sequence[JudgeRequest], on_done: Callable[[JudgeOutcome], None] | None = None
    ) -> tuple[list[JudgeOutcome | None], SiuoError | None]:
        """As ``grade_many``, but a stop of this judge (a refusing endpoint, the decline or
        no-verdict watch, an outage past its hold) is returned instead of raised, with the
        outcomes: None for each request the stop left unanswered. A panel keeps its other
        judges' verdicts this way.

        Raises:
            JudgeInterrupted: SIGINT / SIGTERM, as grade_many.
        """
        futures = self._grade_all(requests, on_done)
        stop = self._stop
        if stop is not None and not isinstance(stop, SiuoError):
            raise raised_again(stop)
        outcomes: list[JudgeOutcome | None] = []
        for future in futures:
            failure = future.exception()
            if failure is None:
                outcomes.append(future.result())
            elif stop is not None and isinstance(failure, SiuoError):
                outcomes.append(None)
            else:
                raise failure
        return outcomes, stop

    def _grade_all(
        self, requests: Sequence[JudgeRequest], on_done: Callable[[JudgeOutcome], None] | None
    ) -> list[Future[JudgeOutcome]]:
        """Every request submitted and waited for; a stop does not raise here."""
        futures: list[Future[JudgeOutcome]] = []
        # The grace for calls in flight is given inside the context, where a second signal ends
        # the process at once.
        with stop_on_signals():
            try:
                # Each request runs in the caller's context (a copy each: a context is entered by one
                # thread at a time), so a harness that records calls per sample (Inspect's transcript)
                # sees the calls made for it.
                futures += [
                    self._pool.submit(contextvars.copy_context().run, self.grade, request) for request in requests
                ]
                if on_done is not None:
                    for future in futures:
                        future.add_done_callback(lambda done: _report(done, on_done))
                wait(futures)  # all of them, so no call is left running after a stop
            except KeyboardInterrupt as exc:
                raise self._interrupt(as_interrupted(exc), futures) from None
        return futures

    def _interrupt(self, interrupted: JudgeInterrupted, futures: list[Future[JudgeOutcome]]) -> JudgeInterrupted:
        """Stop on a signal: no new call, the queued ones cancelled, the ones in flight given
        INTERRUPT_GRACE_S seconds; what was stopped and kept, as the error to raise."""
        self.interrupt(interrupted)
        cancelled = sum(1 for future in futures if future.cancel())
        running = [future for future in futures if not future.done()]
        finished_in_grace = len(running) - len(wait(running, timeout=INTERRUPT_GRACE_S).not_done) if running else 0
        left = len(running) - finished_in_grace
        kept = self.kept()
        abandoned = f", {left} call(s) still unanswered after {INTERRUPT_GRACE_S:g} s left behind" if left else ""
        return JudgeInterrupted(
            interrupted.signum,
            f"judging stopped by {interrupted.signal_name}: no new judge call sent, {cancelled} queued request(s) "
            f"cancelled{abandoned}; {kept}",
        )

    def tally(self) -> CallTally:
        with self._lock:
            return CallTally(self.verdicts_received, self.calls_without_reply, self.replies_without_verdict)

    def kept(self) -> str:
        """What a stopped pass keeps, for its message."""
        if self._cache is not None:
            return f"the {self.verdicts_received} verdict(s) received are kept in the cache {self._cache.path}"
        return "the cache is off, so nothing is kept and a rerun repeats every call"

    def wait_in_flight(self, timeout_s: float) -> int:
        """Give the calls already sent up to ``timeout_s`` seconds to finish (and be cached);
        how many are still unanswered then."""
        with self._lock:
            running = list(self._in_flight.values())
        return len(wait(running, timeout=max(0.0, timeout_s)).not_done) if running else 0

    def interrupt(self, cause: BaseException) -> None:
        """Send no new call from now on: requests not yet sent end with ``cause``."""
        self._interrupted = True
        self._stop_with(cause)
        self._wake.set()
        self._outage.cancel()

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
            return answered.coalesced_copy()
        if leader is not None:
            return leader.result().coalesced_copy()
        try:
            outcome = self._grade_once(request, key)
        except BaseException as exc:
            own.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._in_flight.pop(key, None)
            self._release(key)
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
        if (answered_elsewhere := self._claim_or_wait(request, key)) is not None:
            return answered_elsewhere
        watched = self._declines.enter(request)
        try:
            completion, attempts, failure = self._call_with_retries(request, key)
        except _Offline:
            return JudgeOutcome(request.kind, None, None, self._offline_cause, None)
        if completion is None:
            with self._lock:
                self.calls_without_reply += 1
            return JudgeOutcome(request.kind, None, None, self.transport.redact(failure), None, attempts=attempts)
        outcome = read_completion(request, completion, attempts)
        if outcome.verdict is None:
            with self._lock:
                self.replies_without_verdict += 1
            self._settle_without_verdict(key, outcome)
        self.remember(key, request.kind, outcome)
        if watched:
            self._watch(request, outcome)
        return outcome

    @property
    def cache_path(self) -> Path | None:
        """The cache file in use (``cache.py`` may move it off a network file system)."""
        return self._cache.path if self._cache is not None else None

    def claim(self, key: str) -> bool:
        """Claim ``key`` for a call made outside ``grade`` (the probe's); False while another
        process sharing the cache holds it. ``accept`` (or ``close``) ends the claim."""
        if self._cache is None:
            return True
        if self._cache.claim(key) is not None:
            return False
        with self._lock:
            self._claimed.add(key)
        return True

    def _claim_or_wait(self, request: JudgeRequest, key: str) -> JudgeOutcome | None:
        """Claim ``key`` before calling; while another process sharing the cache holds it, wait
        for its verdict there. None: call it here (claimed, or the wait ran out)."""
        if self._cache is None:
            return None
        # The longest one call of the holder may take: every attempt timing out after its backoff,
        # plus an outage hold and the wait on the provider's rate limit (429s spend no attempt).
        # Past it, paying twice beats waiting without end.
        give_up = time.monotonic() + self.config.max_attempts * (self.config.timeout_s + _MAX_BACKOFF_S)
        give_up += self.config.outage_hold_s + self.config.rate_limit_wait_s
        while (holder := self._cache.claim(key)) is not None:
            if holder.reply is not None:
                return self._reply_of_another_process(request, holder)
            notice_once(
                f"judge requests are being graded by another process sharing the judge cache {self._cache.path} "
                f"({holder.describe()}); waiting for its verdicts there instead of paying for the same calls"
            )
            self._wake.wait(CLAIM_POLL_S)
            self._raise_if_stopped()
            if (hit := self._from_cache(request, key)) is not None:
                return hit
            if time.monotonic() > give_up:
                return None
        with self._lock:
            self._claimed.add(key)
        # The holder may have stored its verdict and ended its claim just before this claim.
        return self._from_cache(request, key)

    def _reply_of_another_process(self, request: JudgeRequest, holder: ClaimHolder) -> JudgeOutcome:
        """The outcome of the reply without a verdict another process got for this request: read
        as if this engine had received it, at no cost here."""
        message = SimpleNamespace(content=holder.reply)
        completion = SimpleNamespace(choices=[SimpleNamespace(message=message)], model=holder.model, usage=None)
        with self._lock:
            self.replies_without_verdict += 1
        return replace(read_completion(request, completion, attempts=0), cached=True)

    def _settle_without_verdict(self, key: str, outcome: JudgeOutcome) -> None:
        """Leave a reply without a verdict in this engine's claim, for the other processes."""
        if not (outcome.raw_text and outcome.raw_text.strip()):
            self._release(key)
        elif self._drop_claim(key) and self._cache is not None:
            self._cache.settle_without_verdict(key, outcome.raw_text, outcome.model)

    def _release(self, key: str) -> None:
        if self._drop_claim(key) and self._cache is not None:
            self._cache.release(key)

    def _drop_claim(self, key: str) -> bool:
        """Forget this engine's claim on ``key``; whether it held one."""
        with self._lock:
            claimed = key in self._claimed
            self._claimed.discard(key)
        return claimed

    def _watch(self, request: JudgeRequest, outcome: JudgeOutcome) -> None:
        if (tripped := self._declines.record(request, outcome)) is not None:
            self._stop_with(stop_error(tripped, self.config))

    def remember(self, key: str, kind: str, outcome: JudgeOutcome) -> None:
        """Store a parsed verdict in the cache (batch imports land here too)."""
        if self._cache is not None and outcome.verdict is not None and outcome.raw_text is not None:
            reply = CachedReply(outcome.raw_text, outcome.model, outcome.prompt_tokens, outcome.completion_tokens)
            self._cache.put(key, kind, reply)
            with self._lock:
                self.verdicts_received += 1

    def preload(self, key: str, outcome: JudgeOutcome) -> None:
        """Make ``outcome`` (a reply from a batch job) this engine's answer for ``key``: the first
        request with that key gets it as it is, later ones as coalesced."""
        with self._lock:
            self._imported[key] = outcome

    def accept(self, request: JudgeRequest, completion: Any) -> JudgeOutcome:
        """Use a reply obtained outside grade (the probe's) as the answer to ``request``."""
        outcome = read_completion(request, completion, attempts=1)
        key = self.key(request)
        self.remember(key, request.kind, outcome)
        if outcome.verdict is None:
            self._settle_without_verdict(key, outcome)
        self._release(key)
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
        self._imported[key] = outcome.coalesced_copy()
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
            image_sha256=encoded_image(request.image_path).sha256 if request.image_path else "",
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

    def _call_with_retries(self, request: JudgeRequest, key: str) -> tuple[Any, int, str]:
        """The call and its retries: (completion or None, the calls it took, the failure); the
        calls count the 429s, not a probe of the outage breaker nor a call the model rejected a
        parameter of.

        A 429 is back-pressure (backpressure.py): the call waits and is sent again without
        spending one of ``max_attempts``, until the process gives up waiting on 429s."""
        weight = request_tokens(request.prompt, request.image_path, self.config.model) + self.config.max_tokens
        attempt = 0
        calls = 0
        adaptations = 0
        while attempt < self.config.max_attempts:
            attempt += 1
            self._wait_for_limits(weight)
            probing = self._admit()
            try:
                with self.pressure.sending(self._stopped) as sent_at, self._slots.slot():
                    self._raise_if_stopped()
                    # Checked with the slot held: a reply that arrived while this request waited may have set it.
                    self._hold.wait()
                    calls += 1
                    completion = self.transport.send(request)
                self.pressure.replied()
                self._outage.succeeded(probing)
                return completion, calls, ""
            except SiuoError:  # a stop (refusing endpoint, decline watch, outage), not a failed call
                raise
            except RateLimitGiveUp as exc:
                return None, calls, str(exc)
            except Exception as exc:  # every failure is either retried, adapted to, or recorded
                failure = f"judge call failed after {attempt} attempt(s): {type(exc).__name__}: {exc}"
                self._hold.note(response_headers(exc), weight)
                if is_rate_limited(exc):
                    attempt -= 1  # back-pressure, not a failed try: the pause and pace are the wait
                    try:
                        self.pressure.throttled(sent_at, retry_after_s(exc, cap_s=self.config.rate_limit_wait_s))
                    except RateLimitGiveUp as given_up:
                        return None, calls, str(given_up)
                    continue
                if is_server_failure(exc):
                    self._outage.failed(key, self.transport.redact(f"{type(exc).__name__}: {exc}"), probing)
                    if probing:
                        # The outage's try, not this request's: the hold bounds how often it is made.
                        attempt -= 1
                        calls -= 1
                        probing = False
                if adaptations < 2 and self.transport.adapt(exc):
                    adaptations += 1
                    attempt -= 1  # the request was malformed for this model, not a try
                    calls -= 1
                    continue
                if is_refusal(exc):
                    self._stop_with(JudgeEndpointError(self.transport.refusal_message(exc)))
                    raise raised_again(self._stop) from None  # type: ignore[arg-type]
                if not is_retryable(exc) or attempt == self.config.max_attempts:
                    return None, calls, failure
                self._wake.wait(self._delay(exc, attempt))
            finally:
                if probing:
                    self._outage.probe_ended()
        raise AssertionError("unreachable: max_attempts >= 1")

    def _stopped(self) -> bool:
        return self._stop is not None

    def _admit(self) -> bool:
        """Wait while the outage breaker holds requests; whether this attempt is its probe."""
        self._raise_if_stopped()
        try:
            probing = self._outage.admit()
        except OutageError as exc:
            if not self._errors_after_outage:
                self._stop_with(OutageError(f"{exc}; stopped ({self.kept()})"))
                raise raised_again(self._stop) from None  # type: ignore[arg-type]
            self.go_offline({}, str(exc))
            raise _Offline from None
        self._raise_if_stopped()
        return probing

    def _wait_for_limits(self, weight: int) -> None:
        if self._rate is not None:
            self._rate.wait_turn()
        if self._tokens is not None:
            self._tokens.wait_turn(weight)

    def _delay(self, exc: Exception, attempt: int) -> float:
        retry_after = retry_after_s(exc)
        if retry_after is not None:
            return retry_after
        return min(_MAX_BACKOFF_S, self.config.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)

    def _stop_with(self, error: BaseException) -> None:
        with self._lock:
            if self._stop is None:
                self._stop = error

    def _raise_if_stopped(self) -> None:
        if self._stop is not None:
            raise raised_again(self._stop)

    def close(self) -> None:
        """Release the workers and the connection; after an interrupt, without waiting for
        calls still in flight (their threads end when their call does)."""
        self._pool.shutdown(wait=not self._interrupted, cancel_futures=self._interrupted)
        if self._cache is not None:
            # After an interrupt, calls still in flight may yet store their verdicts.
            self._cache.close(connections=not self._interrupted)
        if not self._interrupted:
            self.transport.close()


class _Offline(Exception):
    """The engine went offline while this request waited (the outage breaker gave up)."""


def _report(done: Future[JudgeOutcome], on_done: Callable[[JudgeOutcome], None]) -> None:
    if not done.cancelled() and done.exception() is None:
        on_done(done.result())


@lru_cache(maxsize=4)
def shared_engine(config: JudgeConfig) -> JudgeEngine:
    """One engine per judge configuration per process, shared by every thread and every
    adapter hook (coalescing and the cache of answered requests then span a whole run). A
    harness run keeps its responses through an outage: requests after the breaker gives up end
    as judge errors, which the run reports with the command that finishes the scoring."""
    return JudgeEngine(config, errors_after_outage=True)
