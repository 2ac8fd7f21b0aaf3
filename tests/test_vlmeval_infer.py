"""VLMEvalKit generation without a judge key (`--mode infer`), then `siuo-eval judge` on its work folder."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from siuo_task.vlmeval import GEN_PAPER, MCQ
from tests.helpers.cli_runs import clean_env, judge_env, read_run, siuo_eval
from tests.helpers.judge_server import JudgeServer
from tests.helpers.model_server import ModelServer

pytestmark = pytest.mark.slow


def test_infer_needs_no_judge_and_judge_reads_the_work_folder(small_data_dir: Path, tmp_path: Path) -> None:
    env = clean_env(small_data_dir, LMUData=str(tmp_path / "lmu"), HF_HUB_OFFLINE="1")
    work = tmp_path / "outputs"
    command = [
        sys.executable,
        "-m",
        "siuo_task.vlmeval",
        "--model",
        "test-model",
        "--data",
        GEN_PAPER,
        MCQ,
        "--mode",
        "infer",
    ]
    with ModelServer() as model:
        # No --temperature: the paper's 3-sample dataset is sampled at 1.0 all the same, MCQ stays greedy.
        command += ["--base-url", model.base_url, "--work-dir", str(work), "--api-nproc", "4"]
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
        temperatures = Counter()
        for (prompt, temperature), count in model.temperatures.items():
            temperatures["mcq" if "\n(A) " in prompt else "gen", temperature] += count
    assert temperatures == {("gen", 1.0): 54, ("mcq", 0.0): 18}, temperatures
    assert f"{GEN_PAPER} asks API models at temperature 1.0" in proc.stderr
    predictions = sorted(work.rglob(f"test-model_{GEN_PAPER}.xlsx"))
    assert predictions, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not list(work.rglob("*_siuo_results.json"))  # nothing judged, no key asked for
    with JudgeServer(declines=False) as judge:
        judged = siuo_eval(
            "judge", work, "--output", tmp_path / "sweep", env=judge_env(small_data_dir, judge.base_url, "off")
        )
    assert judged.returncode == 0, judged.stderr
    assert "named by VLMEvalKit file name" in judged.stderr
    assert "status.json" not in judged.stdout + judged.stderr  # VLMEvalKit's own run record: no note
    assert {p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir()} == {"test-model"}
    results, samples = read_run(tmp_path / "sweep" / "test-model")
    assert results["n_items"] == 18 and all(len(s["siuo"]["responses"]) == 3 for s in samples)
