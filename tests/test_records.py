"""The typed per-item records: what real runs write reads back into the types and out again key
for key, and every count a run reports is the one its judge server saw.

The run judged here is a reasoning model's (a trace before every answer) with its traces judged
(SIUO_JUDGE_TRACES=1), against a judge that declines some gradings: results.json, its usage
block, the leaderboard and the printed summary must all state the number of gradings the server
declined, traces included.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from siuo_task.benchmark.circular import answer_rotation, item_records, rotations
from siuo_task.benchmark.data import load_siuo
from siuo_task.benchmark.records import CircularRecord, GenRecord, McqRecord, item_record
from siuo_task.benchmark.scoring import score_mcq_item
from tests.helpers.cli_runs import authors_rows, judge_env, read_run, write_json
from tests.helpers.in_process import siuo_eval_in_process
from tests.helpers.judge_server import JudgeServer, seeded_declines

DECLINE_SHARES = {"safety": 0.2, "effectiveness": 0.1}


def _reasoning_rows(tag: str) -> list[dict[str, Any]]:
    rows = authors_rows(count_per_category=2, responses=3, tag=tag)
    for row in rows:
        qid = row["question_id"]
        row["responses"] = [f"<think>{tag}weighing {n} on {qid}</think>{tag}answer {n} to {qid}" for n in range(3)]
    return rows


@pytest.fixture(scope="module")
def traced_sweep(small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``siuo-eval judge`` over a folder holding one reasoning model's responses, traces judged,
    against a judge declining some gradings of each kind; with what the server declined."""
    root = tmp_path_factory.mktemp("traced")
    write_json(root / "inputs" / "reasoner.json", _reasoning_rows("traced "))
    plan = seeded_declines(DECLINE_SHARES, seed=21)
    with JudgeServer(declines=False, fault_for=plan) as server:
        env = judge_env(small_data_dir, server.base_url, "off", SIUO_JUDGE_TRACES="1", SIUO_JUDGE_DECLINE_STOP="off")
        proc = siuo_eval_in_process("judge", root / "inputs", "--output", root / "out", env=env)
        exchanges = list(server.log.exchanges)
    declined = [exchange for exchange in exchanges if exchange.intended is None]
    return {"proc": proc, "out": root / "out", "exchanges": exchanges, "declined": declined}


def test_every_count_of_declines_is_what_the_server_declined(traced_sweep: dict[str, Any]) -> None:
    proc, declined = traced_sweep["proc"], traced_sweep["declined"]
    assert proc.returncode == 1, proc.stderr  # declines are judge errors
    # The run judged traces, and the server declined some of them as well as answers.
    traces = [e for e in traced_sweep["exchanges"] if "weighing" in e.response]
    assert traces and any(e.intended is None for e in traces)
    assert any(e.intended is None for e in traced_sweep["exchanges"] if "weighing" not in e.response)
    leaderboard = json.loads((traced_sweep["out"] / "leaderboard.json").read_text())
    (row,) = leaderboard["runs"]
    results, samples = read_run(traced_sweep["out"] / row["run"])
    assert results["usage"]["coalesced"] == 0  # every request was its own call: one reply per grading
    expected = len(declined)
    assert results["judge_declines"] == results["usage"]["declines"] == row["judge_declines"] == expected
    assert results["judge_errors"] == expected  # the server's only faults are its refusals
    summary = re.search(rf"{re.escape(row['run'])}: judge calls .* \(declined (\d+)\)", proc.stdout)
    assert summary is not None and int(summary.group(1)) == expected, proc.stdout
    assert f"({expected} declined by the judge;" in proc.stderr
    records = [GenRecord.from_dict(sample["siuo"]) for sample in samples]
    assert sum(record.counts().declines for record in records) == expected
    assert sum(record.counts().traces for record in records) == len(traces)
    assert sum(record.counts().requests for record in records) == len(traced_sweep["exchanges"])


def _round_trips(line: str) -> bool:
    row = json.loads(line)
    row["siuo"] = item_record(row["siuo"]).to_dict()
    return json.dumps(row, ensure_ascii=False) == line


def test_records_of_a_judged_run_round_trip_byte_for_byte(traced_sweep: dict[str, Any]) -> None:
    (row,) = json.loads((traced_sweep["out"] / "leaderboard.json").read_text())["runs"]
    lines = (traced_sweep["out"] / row["run"] / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines and all(_round_trips(line) for line in lines)
    record = GenRecord.from_dict(json.loads(lines[0])["siuo"])
    assert isinstance(item_record(record.to_dict()), GenRecord)
    assert [o.kind for o in record.outcomes()][:3] == ["safety", "effectiveness", "safety"]  # request order
    assert all(response.trace_safety_judge is not None for response in record.responses)


def test_records_with_judge_passes_round_trip(small_data_dir: Path, tmp_path: Path) -> None:
    source = write_json(tmp_path / "passes.json", _reasoning_rows("passes ")[:4])
    with JudgeServer() as server:
        env = judge_env(small_data_dir, server.base_url, "off")
        proc = siuo_eval_in_process("judge", source, "--output", tmp_path / "out", "--judge-passes", "2", env=env)
    assert proc.returncode in (0, 1), proc.stderr
    lines = (tmp_path / "out" / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    assert all(_round_trips(line) for line in lines)
    record = GenRecord.from_dict(json.loads(lines[0])["siuo"])
    assert all(response.verdicts_per_pass and len(response.verdicts_per_pass) == 2 for response in record.responses)


def test_multiple_choice_records_round_trip(small_data_dir: Path) -> None:
    items = load_siuo(small_data_dir).mcq
    for item in items:
        for response in (f"<think>maybe {item.correct_option}</think>{item.correct_option}", "no letter here"):
            record = score_mcq_item(item, response).to_dict()
            typed = item_record(record)
            assert isinstance(typed, McqRecord) and typed.to_dict() == record
            assert list(typed.to_dict()) == list(record)
    answers = [answer_rotation(q, q.gold if q.rotation % 2 else "A") for item in items for q in rotations(item)]
    for record in item_records(answer.to_dict() for answer in answers).values():
        typed = item_record(record)
        assert isinstance(typed, CircularRecord) and json.dumps(typed.to_dict()) == json.dumps(record)
