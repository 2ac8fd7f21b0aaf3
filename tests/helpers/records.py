"""Judged runs for tests that start from data: the results.json + samples.jsonl `siuo-eval judge`
writes, made by the real judge path (in this process) against the loopback judge server, so a
report, export-review or agreement test pays no Python start and no imports for its inputs."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tests.helpers.cli_runs import judge_env, write_json
from tests.helpers.in_process import siuo_eval_in_process
from tests.helpers.judge_server import JudgeServer


def judged_run(
    output: Path,
    rows: list[dict[str, Any]],
    server: JudgeServer,
    data_dir: Path,
    *options: str,
    source: Path | None = None,
    cache: Path | str = "off",
    **extra: str,
) -> subprocess.CompletedProcess[str]:
    """``rows`` (the authors' results format: items with their ``responses``) written to
    ``source`` (None: OUTPUT.json; its file name names the run) and judged by ``siuo-eval judge
    SOURCE --output OUTPUT OPTIONS`` against ``server``, in the environment ``cli_runs.judge_env``
    gives a subprocess (``extra`` adds variables). Returns the run's exit status and what it
    printed; the files are in ``output``."""
    source = write_json(source or output.parent / f"{output.name}.json", rows)
    env = judge_env(data_dir, server.base_url, cache, **extra)
    return siuo_eval_in_process("judge", source, "--output", output, *options, env=env)
