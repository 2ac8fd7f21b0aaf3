"""A judging progress bar that says when the provider's rate limit holds the calls back.

While every call waits on 429s no call ends, so a bar updated only as calls end would stand
still without saying why. ``BarStatus`` keeps the bar's postfix (what its owner sets as calls
end) followed by the engines' back-pressure status ("rate-limited, waiting 12 s (at most 900 s)",
see backpressure.py), refreshed by a thread twice a second while the bar is open.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from siuo_task.judge.engine import JudgeEngine
from siuo_task.judge.panel import PanelEngine, judge_label

_REFRESH_S = 0.5


class Bar(Protocol):
    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None: ...


def rate_limit_status(engine: JudgeEngine | PanelEngine) -> Callable[[], str | None]:
    """What holds ``engine``'s calls back now (None: nothing); a panel names the judge."""
    if isinstance(engine, JudgeEngine):
        return engine.pressure.status
    judges: Sequence[JudgeEngine] = engine.engines

    def status() -> str | None:
        for judge in judges:
            if (text := judge.pressure.status()) is not None:
                return f"{judge_label(judge.config)}: {text}"
        return None

    return status


class BarStatus:
    """Context manager: ``bar``'s postfix is ``set``'s text plus ``status()`` while open."""

    def __init__(self, bar: Bar, status: Callable[[], str | None] | None) -> None:
        self._bar = bar
        self._status = status
        self._lock = threading.Lock()
        self._text = ""
        self._shown: str | None = None
        self._had_status = False
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="siuo-judge-bar", daemon=True)

    def set(self, text: str) -> None:
        """The owner's part of the postfix (e.g. calls and cost), shown with the status; drawn
        at the bar's next update."""
        with self._lock:
            self._text = text
        self._show(draw=False)

    def _show(self, draw: bool) -> None:
        status = self._status() if self._status is not None else None
        with self._lock:
            shown = ", ".join(part for part in (self._text, status) if part)
            changed, had_status = shown != self._shown, self._had_status
            self._shown, self._had_status = shown, status is not None
        if changed:
            # Drawn at once only when the status comes, changes or goes: no call may end for a while.
            self._bar.set_postfix_str(shown, refresh=draw and (status is not None or had_status))

    def _follow(self) -> None:
        while not self._closed.wait(_REFRESH_S):
            self._show(draw=True)

    def __enter__(self) -> BarStatus:
        if self._status is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join()
