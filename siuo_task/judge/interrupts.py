"""Stopping judging on SIGINT or SIGTERM without losing what was paid for.

While an engine waits for its calls in the main thread, the first SIGINT or SIGTERM raises
``JudgeInterrupted`` there; the engine then sends no new call, cancels the queued ones, gives
the calls in flight a few seconds, and re-raises it with what was kept. A second signal ends
the process at once. What the interrupted command or run prints, and which command resumes it,
is its caller's to say: this client knows no command.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

# The signals that stop judging; the exit status is 128 + the signal's number, as a shell reports.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class JudgeInterrupted(KeyboardInterrupt):
    """Judging stopped on a signal. A KeyboardInterrupt, so code that lets Ctrl-C through (and
    harnesses' ``except Exception`` retries) lets this through too.

    ``detail`` says what was stopped and kept; ``status`` is the exit status the process ends with.
    """

    def __init__(self, signum: int = signal.SIGINT, detail: str = "") -> None:
        super().__init__(detail or f"stopped by {signal.Signals(signum).name}")
        self.signum = signum
        self.detail = detail

    @property
    def status(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    def __str__(self) -> str:
        return self.detail or f"stopped by {self.signal_name}"


def as_interrupted(exc: KeyboardInterrupt) -> JudgeInterrupted:
    """A plain KeyboardInterrupt (Python's own SIGINT handler) as a JudgeInterrupted."""
    return exc if isinstance(exc, JudgeInterrupted) else JudgeInterrupted(signal.SIGINT)


_STATE = threading.Lock()
_SIGNALLED: list[int] = []
_DEPTH = [0]  # contexts entered and not yet left (a command's, then its engine's)


def _handler(signum: int, frame: FrameType | None) -> None:
    with _STATE:
        first = not _SIGNALLED
        _SIGNALLED.append(signum)
    if not first:
        # The user asked twice: leave now, whatever is still running.
        os._exit(128 + signum)
    raise JudgeInterrupted(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """In the main thread: the first SIGINT / SIGTERM raises JudgeInterrupted where the main
    thread is, a second one (while inside any of these contexts) ends the process (status 128 +
    signal). Other threads: no effect (Python delivers signals to the main thread only).

    Leaving restores the earlier handlers; leaving the outermost forgets the signal, so a caller
    that goes on after an interrupt (a notebook) gets its usual Ctrl-C back.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = {signum: signal.signal(signum, _handler) for signum in STOP_SIGNALS}
    except ValueError:  # not the main interpreter
        yield
        return
    with _STATE:
        _DEPTH[0] += 1
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        with _STATE:
            _DEPTH[0] -= 1
            if not _DEPTH[0]:
                _SIGNALLED.clear()
