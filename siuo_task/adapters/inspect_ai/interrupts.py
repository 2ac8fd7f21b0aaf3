"""Ctrl-C or SIGTERM while ``inspect eval`` judges: no new judge call, Inspect's own cancelled
log, then one line naming ``inspect eval-retry`` and the signal's exit status (130 / 143).

Left to itself, Inspect (on asyncio) cancels the run on the first SIGINT, writes its logs marked
cancelled and exits 0, while the samples already being scored go on calling the judge: their
worker threads are not cancelled. So while a sample is judged, the first signal stops every
engine judging for these tasks (requests not yet sent end at once) and then hands over to the
SIGINT handler that was there before (asyncio's, which cancels the run), a SIGTERM as a SIGINT,
so that its log is written too. When Inspect has finished, the calls still in flight get the
engine's grace, and the process ends with 128 + the signal's number. A second signal ends the
process at once.

Signal handlers belong to the process, so there is one watch per process. It holds the
handlers only while a sample is judged (a run's event loop installs its own SIGINT handler when
it starts, and must find the default one), only in the main thread (where ``inspect eval`` runs
its event loop) and only under the ``inspect`` command: a Python-API caller keeps Inspect's own
handling, and its engines are never stopped behind its back.
"""

from __future__ import annotations

import atexit
import os
import shlex
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from siuo_task.harness.api import (
    INTERRUPT_GRACE_S,
    STOP_SIGNALS,
    AnyEngine,
    JudgeInterrupted,
    exit_now,
    invoked_command,
    print_last,
    running_cli,
)


class InterruptWatch:
    """The process's signal handling while Inspect judges (see the module's docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engines: list[AnyEngine] = []
        self._judging = 0
        self._previous: dict[int, Any] = {}
        self._stop: JudgeInterrupted | None = None
        self._signalled_at = 0.0
        self._resume = ""
        self._finished = False
        self._finisher: threading.Thread | None = None

    @contextmanager
    def judging(self, engine: AnyEngine) -> Iterator[None]:
        """Within: a signal stops ``engine`` (and every other engine judging) before Inspect
        cancels the run. Entered in the event loop's thread, around one sample's judging."""
        if threading.current_thread() is not threading.main_thread() or not running_cli("inspect"):
            yield
            return
        with self._lock:
            if not any(known is engine for known in self._engines):
                self._engines.append(engine)
            stop = self._stop
            self._judging += 1
            install = self._judging == 1 and stop is None
        if stop is not None:
            engine.interrupt(stop)  # created after the signal: it sends nothing either
        if install:
            self._previous = {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}
        try:
            yield
        finally:
            with self._lock:
                self._judging -= 1
                # After a signal the handlers stay, so that a second one ends the process at once.
                restore = self._judging == 0 and self._stop is None
            if restore:
                for signum, handler in self._previous.items():
                    signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        with self._lock:
            first = self._stop is None
            if first:
                self._stop = JudgeInterrupted(signum)
                self._signalled_at = time.monotonic()
            engines = list(self._engines)
        if not first:
            exit_now(128 + signum)  # the user asked twice
        stop = self._stop
        assert stop is not None
        for engine in engines:
            engine.interrupt(stop)
        self._resume = _resume_command()
        # Inspect returns normally from a cancelled run. The process then waits for the threads
        # still in a judge call before its exit handlers run, so a thread watching for the main
        # thread's end finishes (after the grace), and the exit handler only waits for it.
        self._finisher = threading.Thread(target=self._finish_after_main_thread, name="siuo-interrupt", daemon=True)
        self._finisher.start()
        atexit.register(self._finish_at_exit)
        cancel_run = self._previous.get(signal.SIGINT)
        if callable(cancel_run):
            cancel_run(signal.SIGINT, frame)
        elif cancel_run != signal.SIG_IGN:
            raise KeyboardInterrupt

    def _finish_after_main_thread(self) -> None:
        threading.main_thread().join()
        self._finish()

    def _finish_at_exit(self) -> None:
        # Returning here would end the process with Inspect's status 0 while the finisher waits.
        if self._finisher is not None:
            self._finisher.join(timeout=INTERRUPT_GRACE_S + 30)
        self._finish()  # should the finisher not have ended the process

    def _finish(self) -> None:
        with self._lock:
            if self._finished or self._stop is None:
                return
            self._finished = True
            stop, engines = self._stop, list(self._engines)
        grace_ends = self._signalled_at + INTERRUPT_GRACE_S
        left = sum(engine.wait_in_flight(grace_ends - time.monotonic()) for engine in engines)
        abandoned = f", {left} call(s) still unanswered after {INTERRUPT_GRACE_S:g} s left behind" if left else ""
        kept = "; ".join(engine.kept() for engine in engines) or "no judge call had been made"
        print_last(
            f"siuo-task: judging stopped by {stop.signal_name}: no new judge call sent{abandoned}; {kept}. "
            "Samples finished before the signal are in the log, and a rerun takes the verdicts kept from the "
            f"judge cache. To resume: {self._resume}"
        )
        exit_now(stop.status)


def _resume_command() -> str:
    """``inspect eval-retry`` with the logs of the tasks running now (Inspect marks them
    cancelled); the same command again when they cannot be told."""
    try:
        from inspect_ai.log._samples import active_samples
    except ImportError:
        return invoked_command()
    # A local log by its absolute path, so the command also works from another folder.
    logs = list(
        dict.fromkeys(
            location if "://" in location else os.path.abspath(location)
            for location in (sample.log_location for sample in active_samples())
            if location
        )
    )
    return shlex.join(["inspect", "eval-retry", *logs]) if logs else invoked_command()


# Signal handlers are the process's: one watch for every task of the run.
WATCH = InterruptWatch()
