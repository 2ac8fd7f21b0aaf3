"""Running `siuo-eval`, or a harness's hooks, in the test process with a judge environment of its own."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from siuo_task.commands.cli import main
from tests.helpers.cli_runs import SECRET
from tests.helpers.judge_server import JudgeServer


@contextlib.contextmanager
def judge_pointed_at(server_url: str, cache: Path, **extra: str) -> Iterator[None]:
    """SIUO_JUDGE_* in this process pointing at ``server_url`` (and nothing else of the user's)
    for the block (``cli_runs.judge_env`` is the same for a subprocess's environment)."""
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


def judge_settings(monkeypatch: pytest.MonkeyPatch, data_dir: Path, **extra: str) -> Callable[[JudgeServer], None]:
    """For the rest of a test: no judge or OpenAI setting of the user's, the SIUO data in
    ``data_dir``, the test key, the judge cache off, and ``extra``; returns what points the
    judge at a server once it is up."""
    for name in list(os.environ):
        if name.startswith(("SIUO_", "OPENAI_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SIUO_DATA_DIR", str(data_dir))
    monkeypatch.setenv("SIUO_JUDGE_CACHE", "off")
    monkeypatch.setenv("SIUO_JUDGE_API_KEY", SECRET)
    for name, value in extra.items():
        monkeypatch.setenv(name, value)

    def point_at(server: JudgeServer) -> None:
        monkeypatch.setenv("SIUO_JUDGE_BASE_URL", server.base_url)

    return point_at


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``siuo-eval ARGS``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()
