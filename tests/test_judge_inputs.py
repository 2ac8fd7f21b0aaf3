"""`siuo-eval judge` on partial, mismatched and malformed inputs: it says so at once, and a broken
file lists every problem, not its first."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.cli_runs import authors_rows, judge_env, write_json
from tests.helpers.fixture_data import real_items
from tests.helpers.in_process import siuo_eval_in_process
from tests.helpers.judge_server import JudgeServer


def test_partial_and_mismatched_inputs_are_named_when_judged(full_data_dir: Path, tmp_path: Path) -> None:
    gen, _ = real_items()
    one = [{**gen[0], "responses": ["a reply"] * 3}]
    rows = authors_rows()
    rows[3]["question"] = "A question from some other data set?"
    rows[5]["question"] = rows[5]["question"] + " (edited)"
    write_json(tmp_path / "in" / "one-item.json", one)
    write_json(tmp_path / "in" / "edited.json", rows)
    with JudgeServer(declines=False) as judge:
        env = judge_env(full_data_dir, judge.base_url, "off")
        proc = siuo_eval_in_process("judge", tmp_path / "in", "--output", tmp_path / "out", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"one-item.json' covers 1 of the 167 items under '{full_data_dir}'" in proc.stderr
    assert "a PARTIAL run" in proc.stderr
    assert "edited.json' covers 18 of the 167 items" in proc.stderr
    assert "edited.json': the question text of 2 item(s) differs from the SIUO data (first: item " in proc.stderr
    # Each rate says what it rests on.
    assert "on 1 of 1 items" in proc.stdout or "on 0 of 1 items" in proc.stdout


def test_a_malformed_file_lists_all_its_problems(small_data_dir: Path, tmp_path: Path) -> None:
    rows = authors_rows()
    rows[1]["responses"] = []
    rows[4] = "not an object"
    del rows[7]["question_id"]
    rows[9]["question_id"] = 999999
    rows[10]["question_id"] = rows[11]["question_id"]
    write_json(tmp_path / "broken.json", rows[:9])
    write_json(tmp_path / "unknown.json", rows[9:])
    env = judge_env(small_data_dir, "http://127.0.0.1:9/v1", "off")
    broken = siuo_eval_in_process("judge", tmp_path / "broken.json", "--output", tmp_path / "out", env=env)
    assert broken.returncode != 0
    assert "cannot be judged (3 problem(s))" in broken.stderr
    assert "item #1 (item " in broken.stderr and "'responses' must be a non-empty list of strings" in broken.stderr
    assert "item #4 is a str" in broken.stderr and "item #7: missing or non-integer 'question_id'" in broken.stderr
    unknown = siuo_eval_in_process("judge", tmp_path / "unknown.json", "--output", tmp_path / "out2", env=env)
    assert unknown.returncode != 0
    assert "2 problem(s) pairing the input with the data" in unknown.stderr
    assert "item 999999 in the input is not in the SIUO data" in unknown.stderr
    assert f"item {rows[11]['question_id']} appears more than once in the input" in unknown.stderr
