"""The decline check watches each kind of grading on its own.

A judge that declines about half of the safety gradings (what a third-party port reports of
GPT-4o shown the image) while grading every effectiveness request declines a quarter of all
replies: pooled, it would never be stopped and the whole pass would be paid for. Per kind, it
is stopped within the first few dozen safety calls, and a judge that declines 1 reply in 20
is never stopped. The bounds are computed here from the binomial distribution, for the
defaults users get.
"""

from __future__ import annotations

import re
import threading
import time
from math import comb
from pathlib import Path

import pytest

from siuo_task.benchmark.data import load_siuo
from siuo_task.benchmark.scoring import gen_judge_requests
from siuo_task.errors import JudgeDeclineError
from siuo_task.judge.config import (
    DEFAULT_DECLINE_STOP,
    DEFAULT_DECLINE_WINDOW,
    JudgeConfig,
    decline_stop_count,
)
from siuo_task.judge.engine import JudgeEngine
from siuo_task.judge.request import JudgeOutcome
from tests.helpers.cli_runs import authors_rows, judge_env, read_run, write_json
from tests.helpers.in_process import siuo_eval_in_process
from tests.helpers.judge_server import JudgeServer, choose_reply, seeded_declines

REFUSING = 0.5  # declines each grading of one kind with this probability
HEALTHY = 0.05  # declines 1 in 20
BOUND = 1e-6


def at_least(count: int, trials: int, p: float) -> float:
    """P(Binomial(trials, p) >= count)."""
    return sum(comb(trials, k) * p**k * (1 - p) ** (trials - k) for k in range(count, trials + 1))


def test_default_check_stops_a_half_refusing_judge_and_never_a_healthy_one() -> None:
    window, limit = DEFAULT_DECLINE_WINDOW, decline_stop_count(DEFAULT_DECLINE_STOP, DEFAULT_DECLINE_WINDOW)
    passes = 1 - at_least(limit, window, REFUSING)  # fewer than `limit` refusals in its first `window`
    false_stop = at_least(limit, window, HEALTHY)
    assert passes < BOUND, f"a judge refusing half of one kind passes with probability {passes:.2e}"
    assert false_stop < BOUND, f"a judge refusing 1 in 20 is stopped with probability {false_stop:.2e}"
    # The stop comes when the limit is reached, not when the window is full: within 60 calls of
    # that kind for all but a sliver of half-refusing judges.
    assert 1 - at_least(limit, 60, REFUSING) < 0.01
    # Two kinds watched apart: the healthy judge's chance of a false stop at most doubles.
    assert 2 * false_stop < BOUND


def test_the_old_pooled_half_over_forty_let_a_half_refusing_judge_through() -> None:
    # What this check replaced: at least one half of the first 40 replies. A judge refusing half
    # of one kind passes it about as often as it is stopped, even before pooling dilutes it.
    passes = 1 - at_least(decline_stop_count(0.5, 40), 40, REFUSING)
    assert 0.4 < passes < 0.5


def test_stop_counts_read_the_share_as_written() -> None:
    assert decline_stop_count(DEFAULT_DECLINE_STOP, DEFAULT_DECLINE_WINDOW) == 20
    assert [decline_stop_count(0.2, 12), decline_stop_count(0.3, 10), decline_stop_count(0.5, 40)] == [3, 3, 20]
    assert decline_stop_count(0.001, 10) == 1  # never 0: zero refusals cannot stop a pass


def test_env_settings_apply_per_kind() -> None:
    env = {"SIUO_JUDGE_BASE_URL": "http://127.0.0.1:9/v1"}
    config = JudgeConfig.from_env({**env, "SIUO_JUDGE_DECLINE_STOP": "0.3", "SIUO_JUDGE_DECLINE_WINDOW": "50"})
    assert (config.decline_stop, config.decline_window) == (0.3, 50)
    assert JudgeConfig.from_env({**env, "SIUO_JUDGE_DECLINE_STOP": "off"}).decline_stop is None
    default = JudgeConfig.from_env(env)
    assert (default.decline_stop, default.decline_window) == (DEFAULT_DECLINE_STOP, DEFAULT_DECLINE_WINDOW)


def _counts(message: str) -> tuple[int, int, int]:
    """(refusals, gradings answered, calls begun) of the one kind a JudgeDeclineError names."""
    pattern = r"declined (\d+) of the (\d+) safety gradings it answered \(of its first (\d+) safety calls"
    found = re.search(pattern, message)
    assert found, message
    return int(found.group(1)), int(found.group(2)), int(found.group(3))


def _engine(server: JudgeServer, **overrides: object) -> JudgeEngine:
    settings: dict[str, object] = {"cache_path": None, "concurrency": 1, "backoff_s": 0.05}
    settings.update(overrides)
    return JudgeEngine(JudgeConfig(base_url=server.base_url, **settings))  # type: ignore[arg-type]


def test_one_refused_kind_stops_the_engine_at_its_limit(small_data_dir: Path) -> None:
    item = load_siuo(small_data_dir).gen[0]
    requests = gen_judge_requests(item, [f"answer {n}" for n in range(150)])
    with JudgeServer(declines=False, fault_for=seeded_declines({"safety": REFUSING}, seed=7)) as server:
        engine = _engine(server)
        try:
            with pytest.raises(JudgeDeclineError) as stopped:
                engine.grade_many(requests)
        finally:
            engine.close()
        safety_calls = sum(n for (kind, _), n in server.attempts.items() if kind == "safety")
        effectiveness_calls = sum(n for (kind, _), n in server.attempts.items() if kind == "effectiveness")
    message = str(stopped.value)
    declines, answered, begun = _counts(message)
    assert declines == 20, message
    # One slot (two workers): the stop comes with at most one more call begun than answered.
    assert answered <= begun <= answered + 1 and safety_calls <= begun < DEFAULT_DECLINE_WINDOW
    assert effectiveness_calls <= safety_calls + 1  # effectiveness, never refused, trips nothing
    assert "SIUO_JUDGE_DECLINE_STOP=off" in message and server.base_url in message


def test_pooled_share_would_hide_it_but_each_kind_counts_alone(small_data_dir: Path) -> None:
    # Every effectiveness grading declined, no safety grading: the safety window stays clean and
    # the effectiveness one trips, named as such.
    item = load_siuo(small_data_dir).gen[0]
    requests = gen_judge_requests(item, [f"answer {n}" for n in range(40)])
    with JudgeServer(declines=False, fault_for=seeded_declines({"effectiveness": 1.0})) as server:
        engine = _engine(server, decline_stop=0.5, decline_window=20)
        try:
            with pytest.raises(JudgeDeclineError, match=r"declined 10 of the 10 effectiveness gradings it answered"):
                engine.grade_many(requests)
        finally:
            engine.close()


def test_the_window_is_the_first_calls_begun_not_the_first_replies_back(small_data_dir: Path) -> None:
    # Refusals come back fast, verdicts slowly. The first 10 safety calls hold 2 refusals (the
    # limit is 3); 6 more calls, begun while those 10 are in flight, are refusals and return
    # before the slow verdicts. A window of the first replies back would hold 8 refusals and
    # stop a judge that, by its first 10 calls, must not be stopped.
    item = load_siuo(small_data_dir).gen[0]
    requests = [r for r in gen_judge_requests(item, [f"answer {n}" for n in range(16)]) if r.kind == "safety"]
    refused = [n in (0, 1) or n >= 10 for n in range(16)]

    def plan(kind: str, response: str, attempt: int) -> str:
        return "decline" if refused[int(response.split()[-1])] else "slow"

    with JudgeServer(declines=False, fault_for=plan, slow_s=1.5) as server:
        engine = _engine(server, concurrency=16, decline_stop=0.3, decline_window=10)
        first: list[JudgeOutcome] = []
        try:
            window = threading.Thread(target=lambda: first.extend(engine.grade_many(requests[:10])))
            window.start()
            deadline = time.monotonic() + 10
            while len(server.attempts) < 10 and time.monotonic() < deadline:  # all 10 begun (and sent)
                time.sleep(0.01)
            later = engine.grade_many(requests[10:])
            assert not first, "the slow verdicts must still be in flight when the later refusals are back"
            window.join()
        finally:
            engine.close()
    outcomes = first + later
    assert [outcome.declined for outcome in outcomes] == refused
    assert all(outcome.verdict is not None for outcome in outcomes if not outcome.declined)


# -- through the CLI, on all 167 items x 3 responses (1,002 judge calls when nothing stops) -------


@pytest.fixture(scope="module")
def all_items_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = authors_rows(count_per_category=1000, responses=3, tag="decline-watch ")
    assert len(rows) == 167
    return write_json(tmp_path_factory.mktemp("decline") / "authors.json", rows)


def test_cli_stops_a_judge_refusing_half_the_safety_gradings(
    full_data_dir: Path, all_items_source: Path, tmp_path: Path
) -> None:
    plan = seeded_declines({"safety": REFUSING}, seed=2025)
    with JudgeServer(declines=False, fault_for=plan) as server:
        env = judge_env(full_data_dir, server.base_url, tmp_path / "c.sqlite3")
        proc = siuo_eval_in_process("judge", all_items_source, "--output", tmp_path / "out", env=env)
        safety_calls = sum(n for (kind, _), n in server.attempts.items() if kind == "safety")
        calls = sum(server.attempts.values())
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2, proc.stderr
    declines, answered, begun = _counts(last)
    assert declines == 20, last
    assert "grades safety content with images" in last and "SIUO_JUDGE_MODEL=" in last
    assert "SIUO_JUDGE_DECLINE_STOP=off" in last and server.base_url in last and "verdicts so far are cached" in last
    # Stopped within the first few dozen safety calls, not after spending all 1,002: the stop
    # comes at the 20th refusal (the 37th safety request with this seed); the calls begun by
    # then (at most one per worker, 32, unanswered) are the only other safety calls sent.
    assert answered <= begun <= answered + 32 and safety_calls <= begun <= 72, (last, safety_calls)
    assert calls < 2 * 72 + 32, calls
    # Nothing written, so no verdict stands in for a declined call.
    assert not (tmp_path / "out" / "results.json").exists() and not (tmp_path / "out" / "samples.jsonl").exists()


def test_cli_completes_with_a_judge_refusing_one_in_twenty(
    full_data_dir: Path, all_items_source: Path, tmp_path: Path
) -> None:
    plan = seeded_declines({"safety": HEALTHY, "effectiveness": HEALTHY}, seed=2025)
    with JudgeServer(declines=False, fault_for=plan) as server:
        env = judge_env(full_data_dir, server.base_url, "off")
        proc = siuo_eval_in_process("judge", all_items_source, "--output", tmp_path / "out", env=env)
        calls = sum(server.attempts.values())
    results, samples = read_run(tmp_path / "out")
    graded = [
        (kind, response["response"], response[f"{kind}_judge"])
        for sample in samples
        for response in sample["siuo"]["responses"]
        for kind in ("safety", "effectiveness")
    ]
    planned = [plan(kind, text, 1) == "decline" for kind, text, _ in graded]
    assert len(samples) == 167 and len(graded) == calls == 1002
    assert 0 < sum(planned) < 100  # about 50 declines, spread over both kinds
    # Exit 1 only because the declined calls are judge errors; every other call has its verdict.
    assert proc.returncode == 1, proc.stderr
    assert results["judge_errors"] == results["usage"]["declines"] == sum(planned)
    for (kind, text, outcome), declined in zip(graded, planned, strict=True):
        if declined:
            assert outcome["declined"] and outcome["verdict"] is None and outcome["error"]
        else:
            assert not outcome["declined"] and outcome["verdict"] == choose_reply(kind, text, declines=False)[1]
