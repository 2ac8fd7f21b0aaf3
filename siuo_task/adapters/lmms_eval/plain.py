"""Our errors end an lmms-eval run with our message as the last line, at once."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from siuo_task.errors import SiuoError

P = ParamSpec("P")
R = TypeVar("R")


def fail_plainly(hook: Callable[P, R]) -> Callable[P, R]:
    """Our errors end the run with our message as the last line, at once.

    lmms-eval retries process_docs and process_results (5 tries, 2 s apart) on any Exception
    and then shows tenacity's RetryError at the end of a long traceback. A bad data folder or
    judge setting will not heal on retry, so it leaves as SystemExit, which is no Exception:
    not retried, and Python prints only its message.
    """

    @functools.wraps(hook)
    def plain(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return hook(*args, **kwargs)
        except SiuoError as exc:
            raise SystemExit(f"siuo-task: {exc}") from exc

    return plain
