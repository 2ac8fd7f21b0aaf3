"""The outage breaker: a judge server that fails call after call is waited for, not hammered.

Retries are per call: on their own, a server that went down is retried by every request in turn,
each through all its attempts (thousands of requests for one run). The breaker counts failed
attempts (5xx, timeouts, dropped connections, bodies that are not JSON) across calls. After
``failures`` in a row, from at least half as many different requests (so a few requests that
always fail cannot trip it), it opens: every request waits, and one at a time probes the server
with a real attempt, at growing intervals. A success closes it and the held requests go on; a
server still failing ``hold_s`` seconds after it opened is given up (``OutageError``), keeping
every verdict already had.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from siuo_task.errors import JudgeEndpointError

_MAX_PROBE_INTERVAL_S = 30.0


class OutageError(JudgeEndpointError):
    """The judge server kept failing for longer than the breaker holds requests."""


@dataclass(frozen=True, slots=True)
class Outage:
    """An open breaker's record: when it opened, how many attempts failed, the last failure."""

    since: float
    failures: int
    last_failure: str


class OutageBreaker:
    """Counts failed attempts across calls; holds requests while the server seems down."""

    def __init__(self, endpoint: str, failures: int | None, hold_s: float, first_interval_s: float) -> None:
        self._endpoint = endpoint
        self._threshold = failures
        self._hold_s = hold_s
        self._first_interval_s = max(first_interval_s, 0.01)
        self._lock = threading.Condition()
        self._streak = 0
        self._streak_keys: set[str] = set()
        self._opened: float | None = None
        self._failures = 0
        self._last_failure = ""
        self._interval = self._first_interval_s
        self._next_probe = 0.0
        self._probing = False
        self._cancelled = False

    @property
    def enabled(self) -> bool:
        return self._threshold is not None

    def admit(self) -> bool:
        """Wait until a call may be sent; True when this call is the probe of an open breaker
        (report its result with ``succeeded`` / ``failed(probe=True)``).

        Raises:
            OutageError: the server failed for longer than the hold; every caller gets it.
        """
        if self._threshold is None:
            return False
        with self._lock:
            while True:
                if self._cancelled or self._opened is None:
                    return False
                now = time.monotonic()
                if now - self._opened >= self._hold_s:
                    raise OutageError(self._outage_message(now))
                if not self._probing and now >= self._next_probe:
                    self._probing = True
                    return True
                wake = self._next_probe if not self._probing else now + self._hold_s
                self._lock.wait(timeout=max(0.01, min(wake, self._opened + self._hold_s) - now))

    def succeeded(self, probe: bool = False) -> None:
        """A reply arrived: the server is up."""
        if self._threshold is None:
            return
        with self._lock:
            self._streak = 0
            self._streak_keys.clear()
            if probe:
                self._probing = False
            if self._opened is not None:
                self._opened = None
                self._interval = self._first_interval_s
                self._lock.notify_all()

    def failed(self, key: str, failure: str, probe: bool = False) -> None:
        """An attempt failed the way a server that is down fails."""
        if self._threshold is None:
            return
        with self._lock:
            self._failures += 1 if self._opened is not None else 0
            self._last_failure = failure
            if probe:
                self._probing = False
                self._next_probe = time.monotonic() + self._interval
                self._interval = min(self._interval * 2, _MAX_PROBE_INTERVAL_S)
                self._lock.notify_all()
                return
            self._streak += 1
            self._streak_keys.add(key)
            distinct_needed = max(1, (self._threshold + 1) // 2)
            if self._opened is None and self._streak >= self._threshold and len(self._streak_keys) >= distinct_needed:
                self._opened = time.monotonic()
                self._failures = self._streak
                self._next_probe = self._opened + self._interval
                self._lock.notify_all()

    def probe_ended(self) -> None:
        """The probe ended with neither a reply nor a server failure (e.g. a 429): let another
        request probe at the next interval."""
        with self._lock:
            if self._probing:
                self._probing = False
                self._next_probe = time.monotonic() + self._interval
                self._lock.notify_all()

    def cancel(self) -> None:
        """Release every waiting request (the engine is stopping)."""
        with self._lock:
            self._cancelled = True
            self._lock.notify_all()

    @property
    def outage(self) -> Outage | None:
        with self._lock:
            if self._opened is None:
                return None
            return Outage(self._opened, self._failures, self._last_failure)

    def _outage_message(self, now: float) -> str:
        return (
            f"the judge endpoint {self._endpoint} failed {self._failures} attempt(s) in a row and was still "
            f"failing after {now - (self._opened or now):.0f} s of waiting for it "
            f"(SIUO_JUDGE_OUTAGE_HOLD={self._hold_s:g}); last failure: {self._last_failure}"
        )
