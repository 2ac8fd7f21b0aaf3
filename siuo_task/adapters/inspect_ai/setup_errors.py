"""Setup errors (data, judge settings, a dead judge) as Inspect's one-line prerequisite errors.

The other harnesses end such a run with one ``siuo-task: ...`` line on stderr; Inspect prints a
full traceback for an exception raised while it builds a task, except for ``PrerequisiteError``,
which it shows as its message alone, on stdout (exit status 1). Under the ``inspect`` command the
line goes to stderr, as in the other harnesses, and Inspect is left nothing to repeat.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from inspect_ai._util.error import PrerequisiteError

from siuo_task.adapters.inspect_ai import exit_status
from siuo_task.harness.api import SiuoError, check_output_folder, cli_option, running_cli

P = ParamSpec("P")
R = TypeVar("R")


class SiuoSetupError(PrerequisiteError):
    """A SIUO setup problem; ``str()`` gives the message too, for callers of ``inspect_ai.eval``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.args = (message,)

    def __str__(self) -> str:
        return str(self.args[0])


def plain_setup_errors(build: Callable[P, R]) -> Callable[P, R]:
    """Our errors while a task is built leave as one ``siuo-task: ...`` line, no traceback."""

    @functools.wraps(build)
    def plain(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            check_log_dir()
            exit_status.install()
            return build(*args, **kwargs)
        except SiuoError as exc:
            message = f"siuo-task: {exc}"
            error = SiuoSetupError(message)
            if running_cli("inspect"):
                print(message, file=sys.stderr, flush=True)
                error.message = ""
            raise error from None

    return plain


def check_log_dir() -> None:
    """Under the ``inspect`` command, its log folder (``--log-dir``, else INSPECT_LOG_DIR, else
    ./logs) can be written, checked as the task is built, before any generation; a remote log
    folder (``s3://...``) is left to Inspect.

    Raises:
        OutputError: naming the folder and what is in the way.
    """
    if not running_cli("inspect"):
        return
    log_dir = cli_option("--log-dir") or os.environ.get("INSPECT_LOG_DIR") or "./logs"
    if "://" not in log_dir:
        check_output_folder(Path(log_dir), "--log-dir")
