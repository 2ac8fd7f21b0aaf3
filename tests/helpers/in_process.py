"""Running `siuo-eval`, or a harness's hooks, in the test process with a judge environment of its own."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
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
        try:
            code = main(args)
        except SystemExit as exc:  # argparse's usage errors, as the process would exit
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def siuo_eval_in_process(
    *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``cli_runs.siuo_eval``'s call run in this process (no Python start, no imports paid again):
    for the call only, the environment is ``env`` (None: this process's) and the working folder
    ``cwd``, both restored after. For tests not about the process itself (its exit as a scheduler
    sees it, Ctrl-C, environment isolation): the settings are read when ``main`` starts, as there."""
    argv = [str(arg) for arg in args]
    with pytest.MonkeyPatch.context() as patch:
        if env is not None:
            for name in list(os.environ):
                if name not in env:
                    patch.delenv(name)
            for name, value in env.items():
                if os.environ.get(name) != value:
                    patch.setenv(name, value)
        if cwd is not None:
            patch.chdir(cwd)
        code, stdout, stderr = run_cli(argv)
    return subprocess.CompletedProcess(["siuo-eval", *argv], code, stdout, stderr)
