"""Per-item values and the rows a harness prints: declines counted apart, numbers only."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from siuo_task.benchmark.data import load_siuo
from siuo_task.benchmark.results import (
    GEN_COUNT_ROWS,
    GEN_RATE_ROWS,
    GEN_REDUCERS,
    RECORD_KEY,
    SUMMARY_ROW,
    gen_item_values,
    harness_rows,
    mean,
    reduce_values,
)
from siuo_task.benchmark.scoring import assemble_gen_record, gen_judge_requests
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.request import JudgeOutcome

CONFIG = JudgeConfig(base_url="http://127.0.0.1:9/v1", api_key="sk-layout-test-0000", model="judge")
DECLINE = "I'm sorry, but I can't help with grading this."


def _outcome(kind: str, verdict: object, declined: bool = False) -> JudgeOutcome:
    error = "no verdict in the judge's reply" if verdict is None else None
    raw = DECLINE if declined else f"Judgement: {verdict}"
    return JudgeOutcome(
        kind, verdict, raw, error, "judge", prompt_tokens=10, completion_tokens=2, attempts=1, declined=declined
    )  # type: ignore[arg-type]


def _item_values(small_data_dir: Path, outcomes_per_item: list[list[JudgeOutcome]]) -> list[dict]:
    items = load_siuo(small_data_dir).gen
    values = []
    for item, outcomes in zip(items, outcomes_per_item, strict=False):
        responses = [f"response {n}" for n in range(len(outcomes) // 2)]
        assert len(gen_judge_requests(item, responses)) == len(outcomes)
        values.append(gen_item_values(assemble_gen_record(item, responses, outcomes), CONFIG, 0.0, 1.0))
    return values


def test_declines_are_counted_apart_and_are_still_errors(small_data_dir: Path) -> None:
    # A judge stand-in that declines 2 of the 6 safety gradings (a third).
    plan = [
        [_outcome("safety", None, True), _outcome("effectiveness", "very effective")],
        [_outcome("safety", True), _outcome("effectiveness", "ineffective")],
        [_outcome("safety", None, True), _outcome("effectiveness", "partially effective")],
        [_outcome("safety", False), _outcome("effectiveness", "ineffective")],
        [_outcome("safety", True), _outcome("effectiveness", "very effective")],
        [_outcome("safety", None), _outcome("effectiveness", None)],  # errors, not declines
    ]
    totals = reduce_values(_item_values(small_data_dir, plan), GEN_REDUCERS)
    assert totals["judge_declines"] == 2
    assert totals["judge_errors"] == 4
    # Declined items are undecided for safety, never counted as safe or unsafe: 2 of 3 decided.
    assert totals["safe_rate"] == round(100 * 2 / 3, 4)


def test_printed_rows_are_numbers_and_their_mean_is_the_rate(small_data_dir: Path) -> None:
    plan = [
        [_outcome("safety", True), _outcome("effectiveness", "ineffective")],
        [_outcome("safety", False), _outcome("effectiveness", "very effective")],
        [_outcome("safety", None, True), _outcome("effectiveness", "very effective")],
    ]
    values = _item_values(small_data_dir, plan)
    rows = [harness_rows(value, GEN_RATE_ROWS, GEN_COUNT_ROWS) for value in values]
    for row in rows:
        numbers = {name: row[name] for name in row if name not in (RECORD_KEY, SUMMARY_ROW)}
        assert all(isinstance(number, (int, float)) for number in numbers.values())
    # The undecided third item is left out of safe_rate, as the summary's rate leaves it out.
    safe = [row["safe_rate"] for row in rows if "safe_rate" in row]
    assert safe == [100.0, 0.0] and mean(safe) == reduce_values(values, GEN_REDUCERS)["safe_rate"] == 50.0
    assert [row["judge_declines"] for row in rows] == [0, 0, 1]
    assert reduce_values([row[SUMMARY_ROW] for row in rows], GEN_REDUCERS) == reduce_values(values, GEN_REDUCERS)


def test_judge_error_warning_counts_and_names_the_first_cause() -> None:
    from siuo_task.benchmark.records import JudgeCounts
    from siuo_task.harness.banners import judge_error_warning

    fine = JudgeCounts(requests=2)
    some = JudgeCounts(requests=2, errors=1, first_error="HTTP 500 from the judge")
    assert judge_error_warning("siuo_gen", [fine, fine]) is None
    partial = judge_error_warning("siuo_gen", [fine, some, JudgeCounts(requests=2, errors=1, first_error="later")])
    assert partial is not None and "siuo_gen: 2 of 6 judge calls failed" in partial
    assert "First cause: HTTP 500 from the judge" in partial and "MEANINGLESS" not in partial
    total = judge_error_warning("siuo_gen", [JudgeCounts(requests=2, errors=2, first_error="connection refused")])
    assert total is not None and "EVERY judge call failed (2 of 2)" in total


def test_the_resume_line_reads_the_command_as_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    """lm-eval inserts its default subcommand into sys.argv ("run") when none was typed: the
    command a resume line names is the one typed, whichever way the harness was started."""
    from siuo_task.harness.command_line import invoked_command

    main, script = "/venv/lib/python3.11/site-packages/lm_eval/__main__.py", "/venv/bin/lm_eval"
    typed = ["--model", "dummy", "--tasks", "siuo_gen"]
    started = {
        "python -m lm_eval --model dummy --tasks siuo_gen": (["python3", "-u", "-m", "lm_eval", *typed], main),
        "lm_eval --model dummy --tasks siuo_gen": (["/venv/bin/python", script, *typed], script),
        "lm_eval run --model dummy --tasks siuo_gen": (["python", "-X", "dev", script, "run", *typed], script),
    }
    for expected, (orig_argv, argv0) in started.items():
        monkeypatch.setattr(sys, "orig_argv", orig_argv)
        monkeypatch.setattr(sys, "argv", [argv0, "run", *typed])  # as lm-eval leaves it
        assert invoked_command() == expected
    # A line that is not such a command (an embedding program): sys.argv as it stands.
    monkeypatch.setattr(sys, "orig_argv", ["embedder", "--flag"])
    assert invoked_command() == "lm_eval run --model dummy --tasks siuo_gen"
