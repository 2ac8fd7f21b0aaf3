"""Running `siuo-eval` in the test process with a judge environment of its own."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from siuo_task.cli import main


@contextlib.contextmanager
def judge_env(server_url: str, cache: Path, **extra: str) -> Iterator[None]:
    """SIUO_JUDGE_* pointing at ``server_url`` (and nothing else of the user's) for the block."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("SIUO_", "OPENAI_")):
                patch.delenv(name)
        patch.setenv("SIUO_JUDGE_BASE_URL", server_url)
        patch.setenv("SIUO_JUDGE_CACHE", str(cache))
        patch.setenv("SIUO_JUDGE_BACKOFF", "0.01")
        for name, value in extra.items():
            patch.setenv(name, value)
        yield


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``siuo-eval ARGS``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()
