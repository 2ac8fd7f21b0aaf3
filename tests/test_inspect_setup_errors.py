"""Inspect's own CLI on a setup that cannot work: one `siuo-task: ...` message, no traceback,
exit status 1, and no model request (as the other harnesses end such a run)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers.cli_runs import clean_env
from tests.helpers.harness_cli import harness_command
from tests.helpers.model_server import ModelServer

pytestmark = pytest.mark.slow


def _inspect(task: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    logs = Path(env["INSPECT_LOG_DIR"])
    command = harness_command("Inspect", env["LOOP_BASE_URL"], logs, False, tasks=(task,), extra=["--limit", "2"])
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.parametrize(
    ("task", "setting", "message"),
    [
        ("siuo_gen_greedy", {}, "siuo-task: no judge API key: set SIUO_JUDGE_API_KEY"),
        ("siuo_mcq", {"SIUO_DATA_DIR": "{tmp}/no-such-folder"}, "siuo-task: SIUO data folder"),
        (
            "siuo_gen",
            {"SIUO_JUDGE_BASE_URL": "http://127.0.0.1:9/v1", "SIUO_JUDGE_RETRIES": "0"},
            "siuo-task: cannot reach the judge endpoint http://127.0.0.1:9/v1",
        ),
    ],
    ids=["no-key", "no-data", "dead-judge"],
)
def test_a_setup_error_is_a_few_lines_without_traceback(
    task: str, setting: dict[str, str], message: str, small_data_dir: Path, tmp_path: Path
) -> None:
    with ModelServer() as model:
        env = clean_env(small_data_dir, "INSPECT_", SIUO_JUDGE_CACHE="off", INSPECT_LOG_DIR=str(tmp_path / "logs"))
        env.update(LOOP_API_KEY="model-key", LOOP_BASE_URL=model.base_url, INSPECT_DISPLAY="plain", COLUMNS="200")
        env.update({name: value.format(tmp=tmp_path) for name, value in setting.items()})
        proc = _inspect(task, env, tmp_path)
        requests = sum(model.prompts.values())
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output and "siuo_task.errors" not in output
    assert message in " ".join(proc.stderr.split())  # on stderr, as the other harnesses print it
    if "SIUO_DATA_DIR" in setting:
        assert str(tmp_path / "no-such-folder") in " ".join(output.split())  # the folder is named
    assert len([line for line in output.splitlines() if line.strip()]) <= 6, output
    assert requests == 0
