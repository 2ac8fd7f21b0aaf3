"""Responses that were not sampled (identical within every item) are flagged: in the harness's
log and results file, in `siuo-eval judge`'s results, and in the report."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers.cli_runs import authors_rows, judge_env, write_json
from tests.helpers.harness_cli import harness_command
from tests.helpers.in_process import siuo_eval_in_process
from tests.helpers.judge_server import JudgeServer
from tests.helpers.model_server import ModelServer


def test_judge_and_report_flag_identical_responses(small_data_dir: Path, tmp_path: Path) -> None:
    rows = authors_rows()
    for row in rows:
        row["responses"] = [row["responses"][0]] * 3  # one answer asked three times
    sampled = authors_rows(tag="sampled ")
    write_json(tmp_path / "in" / "greedy.json", rows)
    write_json(tmp_path / "in" / "sampled.json", sampled)
    with JudgeServer(declines=False) as judge:
        env = judge_env(small_data_dir, judge.base_url, tmp_path / "cache.sqlite3")
        judged = siuo_eval_in_process("judge", tmp_path / "in", "--output", tmp_path / "judged", env=env)
        received = len(judge.log.exchanges)
    assert judged.returncode == 0, judged.stderr
    # The progress bar counts requests; the calls it names are those the judge server received
    # (the identical responses' requests were coalesced or cached, and cost no call).
    calls, cached, coalesced = map(int, re.findall(r"calls (\d+), cached (\d+), coalesced (\d+)", judged.stderr)[-1])
    assert calls == received and cached + coalesced > 0
    greedy = json.loads((tmp_path / "judged" / "greedy" / "results.json").read_text())
    other = json.loads((tmp_path / "judged" / "sampled" / "results.json").read_text())
    assert greedy["responses_not_sampled"] is True and greedy["items_identical_responses"] == len(rows)
    assert other["responses_not_sampled"] is False and other["items_identical_responses"] == 0
    assert "greedy: the responses are identical within 18 of the items" in judged.stdout + judged.stderr
    assert "sampled: the responses are identical" not in judged.stdout + judged.stderr
    # Each rate says how many items it rests on.
    assert f"on {other['safe_rate_items']} of 18 items" in judged.stdout and other["safe_rate_items"] > 0
    report = siuo_eval_in_process("report", tmp_path / "judged", "--output", tmp_path / "report", env=env)
    assert report.returncode == 0, report.stderr
    assert "greedy: NOT SAMPLED" in report.stderr and "sampled: NOT SAMPLED" not in report.stderr
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "greedy (NOT SAMPLED)" in markdown and "sampled (NOT SAMPLED)" not in markdown


@pytest.mark.slow
def test_a_greedy_model_in_a_harness_run_is_flagged(small_data_dir: Path, tmp_path: Path) -> None:
    """lmms-eval's siuo_gen against a model that answers the same every time it is asked."""
    out = tmp_path / "out"
    with ModelServer(sampled=False) as model, JudgeServer(declines=False) as judge:
        env = judge_env(small_data_dir, judge.base_url, "off")
        command = harness_command("lmms-eval", model.base_url, out, generation_only=False, tasks=("siuo_gen",))
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    results = json.loads(next(out.rglob("*_results.json")).read_text())
    summary = results["siuo"]["siuo_gen"]
    assert summary["responses_not_sampled"] is True, proc.stderr[-3000:]
    assert summary["items_identical_responses"] == 18
    assert "siuo_gen: the responses are identical within 18 of the items" in proc.stdout + proc.stderr
