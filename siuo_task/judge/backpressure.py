"""Back-pressure: a provider's HTTP 429 slows this process down instead of failing its calls.

A 429 says "too many requests", not "this request failed": the call is sent again, it spends
none of SIUO_JUDGE_MAX_ATTEMPTS, and the whole process adapts how fast it sends, so that
processes on separate machines that share one provider limit (and share nothing else) settle
below it instead of hammering it. Every call passes ``Backpressure.sending``, which holds it for:

- a **pause**: the provider's Retry-After (``retry-after-ms`` or ``Retry-After``, seconds or an
  HTTP date) holds every call of the process, not only the one that was answered 429; without
  one, an exponential backoff from SIUO_JUDGE_BACKOFF;
- a **window** of calls in flight: halved on a 429 (floor 1), one more per window's worth of
  replies (ceiling SIUO_JUDGE_CONCURRENCY), what bounds a provider's concurrency limit;
- a **pace** of call starts per second, what bounds a requests- or tokens-per-minute limit at
  any server latency (one call in flight can still send hundreds a second): none until the first
  429; then 0.7 x the rate the process was sending at, 0.7 x again on each later 429 (the
  additive-increase / multiplicative-decrease rule under which independent senders converge to
  a fair share of one limit); it grows again with the replies: doubling each second up to half
  the rate it last had to leave, then by 5% of that rate per second, one more 5% for each 4 s
  without a 429 (a share another sender left is taken in seconds), to at most the
  ``x-ratelimit-limit-requests`` the provider announces. A reply saying the provider's request
  window is spent (``x-ratelimit-remaining-requests`` 0) slows it like a 429 would, before the
  429s come.

Only 429s to calls sent after the last slow-down slow it again (a burst of 429s to calls already
in flight is one signal). The wait is bounded by ``SIUO_JUDGE_RATE_LIMIT_WAIT``: counted from
the first 429 after the last reply, so a run that gets replies between its 429s never gives up;
when the provider has answered nothing but 429 for that long, the process gives up: the calls
not yet answered end as judge errors whose message says so (a rerun makes only those).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

# A 429 cuts the pace and the window to these shares.
PACE_DECREASE = 0.7
WINDOW_DECREASE = 0.5
# Above half the last rate it had to leave, the pace grows by this share of that rate per second.
PACE_INCREASE = 0.05
# ... and by that much more for each this many seconds since the last slow-down.
PACE_ACCELERATION_S = 4.0
# Below it, by this factor per second (slow start: an ended storm is left quickly).
PACE_RECOVERY = 2.0
# The slowest pace: one call per 10 s (a provider answering 429 is still asked, slowly).
MIN_PACE = 0.1
# A 429 without Retry-After pauses the process for SIUO_JUDGE_BACKOFF x 2^(n-1), at most this.
MAX_PAUSE_S = 30.0
# How far back the rate the process sends at is measured.
_RATE_SPAN_S = 2.0
# How long after a 429 the progress bar still says the pace is adapted to one.
_SHOWN_S = 10.0
# Longest sleep between checks for a stop (interrupt, refusing endpoint).
_POLL_S = 0.25


class RateLimitGiveUp(Exception):
    """The provider answered only 429 for longer than the wait budget; ``str`` says so."""


def rate_limit_message(endpoint: str, waited_s: float, budget_s: float) -> str:
    """The judge error (and the check's error) of a process that gave up waiting on 429s."""
    return (
        f"rate limited: the judge endpoint {endpoint} answered HTTP 429 (too many requests) to every call "
        f"for {waited_s:.0f} s, the longest this run waits (SIUO_JUDGE_RATE_LIMIT_WAIT={budget_s:g} s); set "
        "SIUO_JUDGE_RATE_LIMIT_WAIT to more seconds to wait longer, or lower SIUO_JUDGE_CONCURRENCY / set "
        "SIUO_JUDGE_RPM below the account's limit"
    )


class Backpressure:
    """How fast one process sends to one judge, adapted to the provider's 429s (see module doc)."""

    def __init__(self, endpoint: str, ceiling: int, budget_s: float, backoff_s: float) -> None:
        self._endpoint = endpoint
        self._ceiling = max(1, ceiling)
        self._budget_s = budget_s
        self._backoff_s = max(backoff_s, 0.01)
        self._cond = threading.Condition()
        self._window = float(self._ceiling)
        self._in_flight = 0
        self._pace: float | None = None  # call starts per second; None: not paced
        self._left_at = 0.0  # the pace the last slow-down left (what growth is measured against)
        self._replied_since_cut = False
        self._pace_cap: float | None = None  # the provider's announced requests per second
        self._next_start = 0.0
        self._paused_until = 0.0
        self._slowed_at = -math.inf  # when the pace was last cut: 429s to calls sent before are not new
        self._pace_bound_at = -math.inf  # when a call last waited for the pace (growth only then)
        self._window_bound_at = -math.inf
        self._starts: deque[float] = deque()
        self._limited_since: float | None = None  # the first 429 since the last reply
        self._pauses_in_a_row = 0
        self._last_429 = -math.inf
        self._gave_up: str | None = None
        self.throttled_calls = 0

    @property
    def budget_s(self) -> float:
        return self._budget_s

    @contextmanager
    def sending(self, stopped: Callable[[], bool] = lambda: False) -> Iterator[float]:
        """Wait for the pause, a place in the window and the pace; yields the send time
        (``time.monotonic``) to hand back to ``throttled`` if the call is answered 429.

        Raises:
            RateLimitGiveUp: the process gave up waiting on 429s (the message says so).
        """
        with self._cond:
            while True:
                if self._gave_up is not None:
                    raise RateLimitGiveUp(self._gave_up)
                now = time.monotonic()
                if stopped():
                    break  # the caller raises its stop
                paced = self._pace is not None and now < self._next_start
                full = self._in_flight >= int(self._window)
                if full:
                    self._window_bound_at = now
                if now >= self._paused_until and not paced and not full:
                    break
                if paced and not full:
                    self._pace_bound_at = now
                until = max(self._paused_until, self._next_start if self._pace is not None else 0.0)
                self._cond.wait(timeout=min(_POLL_S, until - now) if until > now and not full else _POLL_S)
            self._in_flight += 1
            if self._pace is not None:
                self._next_start = max(now, self._next_start) + 1.0 / self._pace
            self._starts.append(now)
            while self._starts and self._starts[0] < now - _RATE_SPAN_S:
                self._starts.popleft()
        try:
            yield now
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    def replied(self) -> None:
        """A call was answered (not 429): the wait budget starts again and the pace may grow."""
        with self._cond:
            now = time.monotonic()
            self._limited_since = None
            self._pauses_in_a_row = 0
            self._replied_since_cut = True
            if now - self._window_bound_at < 1.0 and self._window < self._ceiling:
                self._window = min(float(self._ceiling), self._window + 1.0 / self._window)
            if self._pace is not None and now - self._pace_bound_at < 1.0:
                step = 1.0 / self._pace  # one reply stands for this much time at the pace
                if self._pace < self._left_at / 2:
                    self._pace *= min(PACE_RECOVERY, PACE_RECOVERY**step)
                else:
                    # Faster the longer no 429 came: a share of the limit another sender left
                    # (it finished) is taken in seconds, not minutes.
                    calm = 1.0 + (now - self._slowed_at) / PACE_ACCELERATION_S
                    self._pace += PACE_INCREASE * self._left_at * step * calm
                if self._pace_cap is not None:
                    self._pace = min(self._pace, self._pace_cap)
            self._cond.notify_all()

    def read_headers(self, headers: Mapping[str, str] | None, sent_at: float) -> None:
        """The provider's x-ratelimit-* headers on the reply to a call sent at ``sent_at``: a
        spent request window (remaining 0) slows the pace like a 429 would, before the 429s
        come; the announced requests per minute caps the pace of this process."""
        if headers is None:
            return
        limit = _number(headers.get("x-ratelimit-limit-requests"))
        remaining = _number(headers.get("x-ratelimit-remaining-requests"))
        with self._cond:
            if limit is not None and limit > 0:
                self._pace_cap = limit / 60.0
                if self._pace is not None:
                    self._pace = min(self._pace, self._pace_cap)
            if remaining is not None and remaining < 1:
                self._slow_down(time.monotonic(), sent_at)

    def throttled(self, sent_at: float, retry_after_s: float | None) -> None:
        """A call sent at ``sent_at`` was answered 429: pause, slow down, or give up.

        Raises:
            RateLimitGiveUp: the provider has answered only 429s for the whole wait budget.
        """
        with self._cond:
            now = time.monotonic()
            self.throttled_calls += 1
            self._last_429 = now
            if self._limited_since is None:
                self._limited_since = now
            waited = now - self._limited_since
            if self._gave_up is None and waited >= self._budget_s:
                self._gave_up = rate_limit_message(self._endpoint, waited, self._budget_s)
                self._cond.notify_all()
            if self._gave_up is not None:
                raise RateLimitGiveUp(self._gave_up)
            if retry_after_s is None:
                pause = min(MAX_PAUSE_S, self._backoff_s * 2**self._pauses_in_a_row) * random.uniform(0.5, 1.5)
                self._pauses_in_a_row += 1
            else:
                # A little later than asked, and not all together: processes told the same time
                # would otherwise all come back at once.
                pause = retry_after_s * random.uniform(1.0, 1.2)
            # Never past the budget: the call after it decides whether to give up.
            pause = min(pause, max(0.0, self._budget_s - waited) + 0.05)
            self._paused_until = max(self._paused_until, now + pause)
            self._slow_down(now, sent_at)
            self._cond.notify_all()

    def _slow_down(self, now: float, sent_at: float) -> None:
        """One congestion signal: cut the pace and the window (once per round of calls)."""
        if sent_at < self._slowed_at:
            return
        self._slowed_at = now
        if self._pace is None:
            span = max(now - self._starts[0], 0.2) if self._starts else 1.0
            self._pace = max(len(self._starts) / span, MIN_PACE)
            if self._pace_cap is not None:
                self._pace = min(self._pace, self._pace_cap)
        if self._replied_since_cut or not self._left_at:
            # Cuts with no reply between them (a storm) keep the rate to come back to.
            self._left_at = self._pace
        self._replied_since_cut = False
        self._pace = max(MIN_PACE, self._pace * PACE_DECREASE)
        self._window = max(1.0, self._window * WINDOW_DECREASE)
        self._next_start = max(self._next_start, now)

    def status(self) -> str | None:
        """What the progress bar adds while 429s shape the sending: the pause left, how long
        only 429s came back (of the budget), or the pace after a 429 in the last few seconds;
        None otherwise."""
        with self._cond:
            now = time.monotonic()
            if self._gave_up is not None:
                return "rate-limited, gave up"
            since = ""
            if self._limited_since is not None:
                since = f" (429s for {now - self._limited_since:.0f} s of at most {self._budget_s:g} s)"
            if now < self._paused_until:
                return f"rate-limited, waiting {math.ceil(self._paused_until - now)} s{since}"
            if since:
                return f"rate-limited, waiting{since}"
            if now - self._last_429 < _SHOWN_S and self._pace is not None:
                return f"rate-limited, pacing {self._pace:.1f} calls/s"
            return None

    @property
    def gave_up(self) -> str | None:
        return self._gave_up

    @property
    def pace(self) -> float | None:
        """Call starts per second it allows now (None: not paced)."""
        with self._cond:
            return self._pace

    @property
    def window(self) -> int:
        """Calls in flight it allows now."""
        with self._cond:
            return int(self._window)


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
