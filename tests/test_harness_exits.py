"""A harness run of our tasks never ends with status 0 when it did not finish, and an output folder
that cannot be written stops it before anything is generated (issue 27), in each harness's real
CLI. The model under test is each harness's API model class against the loopback model server,
so model requests are counted; the judge is the loopback judge."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.harness_cli import HARNESSES, harness_command, judged_offline_env, offline_env
from tests.helpers.judge_server import JudgeServer
from tests.helpers.model_server import ModelServer

pytestmark = pytest.mark.slow

OUTPUT_FLAG = {
    "lmms-eval": "--output_path",
    "lm-eval": "--output_path",
    "Inspect": "--log-dir",
    "VLMEvalKit": "--work-dir",
}
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("harness", HARNESSES)
def test_an_output_folder_that_cannot_be_written_stops_a_judged_run_before_generation(
    harness: str, small_data_dir: Path, tmp_path: Path
) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a folder")
    out = in_the_way / "out"
    with ModelServer() as model, JudgeServer() as judge:
        env = judged_offline_env(small_data_dir, tmp_path, model.base_url, judge.base_url)
        command = harness_command(harness, model.base_url, out, generation_only=False, tasks=("siuo_gen_greedy",))
        proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600)
        model_requests, judge_calls = sum(model.prompts.values()), len(judge.log.exchanges) + len(judge.log.probes)
    assert proc.returncode == 1 and model_requests == 0 and judge_calls == 0, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        f"siuo-task: {OUTPUT_FLAG[harness]} '{out}' cannot be made: '{in_the_way}' is a file, not a folder"
    ), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


def test_lmms_eval_failing_after_it_began_our_task_ends_non_zero(small_data_dir: Path, tmp_path: Path) -> None:
    """lmms-eval logs an exception raised inside its evaluation and exits 0 (as it did for every
    run under filelock 4): here a malformed --gen_kwargs raises there."""
    with ModelServer() as model:
        command = harness_command("lmms-eval", model.base_url, tmp_path / "out", True, tasks=("siuo_mcq",))
        command += ["--gen_kwargs", "temperature"]
        env = offline_env(small_data_dir, tmp_path, model.base_url)
        proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Error during evaluation" in proc.stdout + proc.stderr  # lmms-eval's own line: it caught the error
    assert proc.stderr.strip().splitlines()[-1] == (
        "siuo-task: lmms-eval stopped before finishing siuo_mcq (its error is above); ending with status 1 instead "
        "of lmms-eval's 0"
    )
    assert not list((tmp_path / "out").rglob("*_results.json"))


def test_vlmevalkit_evaluating_our_dataset_without_its_predictions_ends_non_zero(
    small_data_dir: Path, tmp_path: Path
) -> None:
    """VLMEvalKit's --mode eval with no predictions logs an error, records the dataset as "done"
    (skipped) and exits 0; our runner ends 1."""
    with ModelServer() as model:
        command = harness_command("VLMEvalKit", model.base_url, tmp_path / "out", False, tasks=("siuo_mcq",))
        command[command.index("--api-nproc") : command.index("--api-nproc") + 2] = ["--mode", "eval"]
        env = offline_env(small_data_dir, tmp_path, model.base_url)
        proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600)
        model_requests = sum(model.prompts.values())
    assert proc.returncode == 1 and model_requests == 0, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "siuo-task: VLMEvalKit stopped before finishing SafeInputsUnsafeOutput_MCQ (its error is above); ending "
        "with status 1 instead of VLMEvalKit's 0"
    )


def test_inspect_ending_our_task_in_error_ends_non_zero(small_data_dir: Path, tmp_path: Path) -> None:
    """``inspect eval`` exits 0 when a task ends in error: here every model call fails (a closed
    port, no retry), which fails a sample and so the task."""
    with ModelServer() as model:
        command = harness_command("Inspect", model.base_url, tmp_path / "logs", True, tasks=("siuo_mcq",))
        env = offline_env(small_data_dir, tmp_path, model.base_url)
    # The server is closed now: its port refuses every model call.
    command += ["--max-retries", "0", "--timeout", "5"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "siuo-task: Inspect stopped before finishing siuo_mcq (its error is above); ending with status 1 instead "
        "of Inspect's 0"
    )
    assert len(list((tmp_path / "logs").glob("*.eval"))) == 1  # Inspect's log of the failed task is kept


def test_every_readme_install_line_is_checked_with_its_harness() -> None:
    """scripts/check_install.py (run by .ci/run) finds README's install lines and the harness
    each brings; a new line it cannot map fails here, not in CI's last minutes."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import check_install
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    lines = check_install.install_lines(ROOT / "README.md")
    assert lines[0] == "pip install -e ."
    assert sorted(map(check_install.harness_of, lines)) == sorted(HARNESSES)
    assert "bash .ci/run" not in lines and all(line.startswith("pip install -e ") for line in lines)
    assert "python3 scripts/check_install.py" in (ROOT / ".ci" / "run").read_text()


def test_readme_shows_a_way_in_without_a_gpu_through_the_model_class_the_matrix_runs() -> None:
    """README's no-GPU command uses lmms-eval's OpenAI-compatible model class, the one every
    lmms-eval run of the harness matrix and of the fresh-install check drives."""
    readme = (ROOT / "README.md").read_text()
    no_gpu = "pip install -e . && lmms-eval --model openai "
    command = next(line for line in readme.splitlines() if line.startswith(no_gpu))
    matrix = harness_command("lmms-eval", "http://127.0.0.1:1/v1", Path("out"), generation_only=False)
    assert matrix[matrix.index("--model") + 1] == "openai"
    assert "--tasks siuo_gen,siuo_mcq" in command and "--log_samples" in command
