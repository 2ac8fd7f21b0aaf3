"""Off the happy path, `siuo-eval judge` wastes nothing and misleads no one (issue 22): Ctrl-C and
SIGTERM stop it within seconds and the rerun repeats no finished call; a judge that answers
without grading fails the check and is stopped within 100 calls; a judge that dies is given up
after a bounded hold, and a short outage is ridden out. Real `siuo-eval` processes against the
loopback judge server."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from siuo_task.benchmark.data import load_siuo
from siuo_task.benchmark.scoring import gen_judge_requests
from siuo_task.judge.config import (
    DEFAULT_OUTAGE_FAILURES,
    DEFAULT_OUTAGE_HOLD_S,
    JudgeConfig,
)
from siuo_task.judge.engine import JudgeEngine
from siuo_task.judge.interrupts import JudgeInterrupted
from tests.helpers.cli_runs import authors_rows, judge_env, read_run, write_json
from tests.helpers.in_process import siuo_eval_in_process
from tests.helpers.judge_server import JudgeServer

CHATTY = "Sure! Here is a short poem about cats:\nSoft paws at dawn, a purr, a stretch, a yawn."


def _calls(server: JudgeServer) -> int:
    return sum(server.attempts.values())


def _start_judge(source: Path, out: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "siuo_task.commands.cli", "judge", str(source), "--output", str(out)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_calls(server: JudgeServer, count: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while _calls(server) < count and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None and _calls(server) >= count, "the run ended before it could be interrupted"


# -- interrupts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_judging_at_once_and_the_rerun_repeats_no_finished_call(
    small_data_dir: Path, tmp_path: Path, signum: int, status: int
) -> None:
    source = write_json(tmp_path / "authors.json", authors_rows(count_per_category=2, responses=3))
    total = 2 * 18 * 3
    with JudgeServer(latency_s=0.4, declines=False) as server:
        env = judge_env(small_data_dir, server.base_url, tmp_path / "cache.sqlite3", SIUO_JUDGE_CONCURRENCY="4")
        proc = _start_judge(source, tmp_path / "out", env)
        _wait_for_calls(server, 20, proc)
        proc.send_signal(signum)
        signalled, at_signal = time.monotonic(), _calls(server)
        _, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - signalled
        time.sleep(0.5)  # anything still on its way would have arrived by now
        after_exit = _calls(server)
        first_run = Counter(server.attempts)
        wrote = [path.name for path in (tmp_path / "out").glob("*")]
        server.attempts.clear()
        # The rerun's wider bound only shortens its wait on the slow server (what it asks is the same).
        rerun = siuo_eval_in_process(
            "judge", source, "--output", tmp_path / "out", env={**env, "SIUO_JUDGE_CONCURRENCY": "16"}
        )
        second_run = Counter(server.attempts)
    lines = stderr.strip().splitlines()
    assert proc.returncode == status and took < 5, (took, stderr[-2000:])
    assert "Traceback" not in stderr, stderr[-3000:]
    # No new call after the signal: at most the ones already on the wire to the server (4 slots).
    assert after_exit - at_signal <= 4, (at_signal, after_exit)
    assert after_exit < total
    # One line: what stopped, what was kept, and the command that resumes.
    last = lines[-1]
    assert last.startswith("siuo-eval: interrupted: judging stopped by " + signal.Signals(signum).name), last
    assert "no new judge call sent" in last and "verdict(s) received are kept in the cache" in last
    assert last.endswith(f"to resume, run: siuo-eval judge {source} --output {tmp_path / 'out'}"), last
    assert not wrote, wrote  # nothing that could pass for a finished run
    # The rerun finishes with every call made once over both runs: no finished call repeated.
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    both = first_run + second_run
    assert len(both) == total and set(both.values()) == {1}, both.most_common(3)
    results, _ = read_run(tmp_path / "out")
    assert results["judge_errors"] == 0 and results["usage"]["cache_hits"] == sum(first_run.values())


def test_a_second_ctrl_c_exits_at_once(small_data_dir: Path, tmp_path: Path) -> None:
    source = write_json(tmp_path / "authors.json", authors_rows(count_per_category=1, responses=1))
    with JudgeServer(latency_s=8.0, declines=False) as server:
        env = judge_env(small_data_dir, server.base_url, "off", SIUO_JUDGE_CONCURRENCY="2")
        proc = _start_judge(source, tmp_path / "out", env)
        _wait_for_calls(server, 2, proc)  # the probe, then the pass
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)  # within the grace the first one gives calls in flight
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130 and time.monotonic() - started < 2, stderr[-2000:]
    assert "Traceback" not in stderr


# -- replies without a verdict --------------------------------------------------------------------


def _chatty(share: float) -> object:
    """A judge that answers the request with small talk, with probability ``share`` per text."""

    def plan(kind: str, response: str, attempt: int) -> tuple[str, None] | None:
        draw = int.from_bytes(hashlib.sha256(f"{kind}\0{response}".encode()).digest()[:8], "big") / 2**64
        return (CHATTY, None) if draw < share else None

    return plan


def test_check_fails_a_judge_that_answers_without_grading(small_data_dir: Path) -> None:
    with JudgeServer(reply_for=_chatty(1.0)) as server:  # type: ignore[arg-type]
        proc = siuo_eval_in_process("check", env=judge_env(small_data_dir, server.base_url, "off"))
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0, proc.stderr
    assert "'Sure! Here is a short poem about cats:" in last and "no safety verdict" in last, last
    assert server.base_url in last


def test_a_judge_that_grades_half_the_time_is_stopped_within_100_calls(full_data_dir: Path, tmp_path: Path) -> None:
    rows = authors_rows(count_per_category=1000, responses=3, tag="half-grading ")
    source = write_json(tmp_path / "authors.json", rows)
    with JudgeServer(reply_for=_chatty(0.5), declines=False) as server:  # type: ignore[arg-type]
        env = judge_env(full_data_dir, server.base_url, tmp_path / "c.sqlite3")
        proc = siuo_eval_in_process("judge", source, "--output", tmp_path / "out", env=env)
        calls = _calls(server)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "hold no verdict, e.g. 'Sure! Here is a short poem" in last, proc.stderr[-2000:]
    assert "SIUO_JUDGE_NO_VERDICT_STOP=off" in last and server.base_url in last
    assert calls <= 100, calls
    assert not (tmp_path / "out" / "results.json").exists()


# -- outages --------------------------------------------------------------------------------------


class _Dies:
    """A fault plan: every call fails with HTTP 500 once the server has received ``after`` calls
    (until ``heal``); counts the calls it failed."""

    def __init__(self, after: int, for_s: float | None = None) -> None:
        self._after = after
        self._for_s = for_s
        self._seen = 0
        self._died_at: float | None = None
        self._lock = threading.Lock()
        self.failed = 0

    def __call__(self, kind: str, response: str, attempt: int) -> str | None:
        with self._lock:
            self._seen += 1
            if self._seen <= self._after:
                return None
            now = time.monotonic()
            self._died_at = self._died_at or now
            if self._for_s is not None and now - self._died_at >= self._for_s:
                return None
            self.failed += 1
            return "500"


def test_a_dead_judge_is_given_up_after_the_hold_and_the_rerun_makes_only_the_missing_calls(
    small_data_dir: Path, tmp_path: Path
) -> None:
    source = write_json(tmp_path / "authors.json", authors_rows(count_per_category=2, responses=3))
    total = 2 * 18 * 3
    dies = _Dies(after=40)
    with JudgeServer(fault_for=dies, declines=False, latency_s=0.02) as server:
        env = judge_env(small_data_dir, server.base_url, tmp_path / "c.sqlite3", SIUO_JUDGE_OUTAGE_HOLD="4")
        started = time.monotonic()
        proc = siuo_eval_in_process("judge", source, "--output", tmp_path / "out", env=env)
        took = time.monotonic() - started
        failed_requests = dies.failed
        answered = {(e.kind, e.response) for e in server.log.exchanges}
        wrote = [path.name for path in (tmp_path / "out").glob("*")]
        server.set_faults(None)
        server.log.exchanges.clear()
        server.attempts.clear()
        rerun = siuo_eval_in_process("judge", source, "--output", tmp_path / "out", env=env)
        asked_again = {(e.kind, e.response) for e in server.log.exchanges}
        rerun_calls = _calls(server)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and took < 60, (took, proc.stderr[-2000:])
    assert f"the judge endpoint {server.base_url} failed" in last and "last failure: InternalServerError" in last
    assert "verdict(s) received are kept in the cache" in last
    assert last.endswith(f"When the judge is back, resume with: siuo-eval judge {source} --output {tmp_path / 'out'}")
    assert failed_requests <= 100, failed_requests
    assert not wrote, wrote
    # The healthy rerun asks only what the dead judge never answered.
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert not answered & asked_again and len(answered) + rerun_calls == total, (len(answered), rerun_calls)
    results, _ = read_run(tmp_path / "out")
    assert results["judge_errors"] == 0 and results["usage"]["cache_hits"] == len(answered)


def test_an_outage_shorter_than_the_hold_is_ridden_out(small_data_dir: Path, tmp_path: Path) -> None:
    source = write_json(tmp_path / "authors.json", authors_rows(count_per_category=2, responses=3))
    outage = _Dies(after=30, for_s=3.0)
    with JudgeServer(fault_for=outage, declines=False) as server:
        env = judge_env(small_data_dir, server.base_url, "off", SIUO_JUDGE_OUTAGE_HOLD="30")
        proc = siuo_eval_in_process("judge", source, "--output", tmp_path / "out", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert outage.failed > DEFAULT_OUTAGE_FAILURES  # it was down long enough to open the breaker
    results, _ = read_run(tmp_path / "out")
    assert results["judge_errors"] == 0 and results["n_items"] == 18


def test_outage_settings() -> None:
    env = {"SIUO_JUDGE_BASE_URL": "http://127.0.0.1:9/v1"}
    default = JudgeConfig.from_env(env)
    assert (default.outage_failures, default.outage_hold_s) == (DEFAULT_OUTAGE_FAILURES, DEFAULT_OUTAGE_HOLD_S)
    assert 120 <= DEFAULT_OUTAGE_HOLD_S <= 180  # a dead judge is given up within about 3 minutes
    set_ = JudgeConfig.from_env({**env, "SIUO_JUDGE_OUTAGE_FAILURES": "4", "SIUO_JUDGE_OUTAGE_HOLD": "2.5"})
    assert (set_.outage_failures, set_.outage_hold_s) == (4, 2.5)
    assert JudgeConfig.from_env({**env, "SIUO_JUDGE_OUTAGE_FAILURES": "off"}).outage_failures is None
    assert JudgeConfig.from_env({**env, "SIUO_JUDGE_NO_VERDICT_STOP": "off"}).no_verdict_stop is None


def test_in_process_an_interrupt_reaches_the_caller_and_leaves_ctrl_c_as_it_was(small_data_dir: Path) -> None:
    # A notebook that calls the engine: the first SIGINT stops the pass and comes back as
    # JudgeInterrupted (a KeyboardInterrupt) with what was kept; afterwards Ctrl-C is Python's again.
    item = load_siuo(small_data_dir).gen[0]
    requests = gen_judge_requests(item, [f"answer {n}" for n in range(20)])
    before = signal.getsignal(signal.SIGINT)
    with JudgeServer(latency_s=0.5, declines=False) as server:
        engine = JudgeEngine(JudgeConfig(base_url=server.base_url, cache_path=None, concurrency=2))
        threading.Timer(0.8, os.kill, (os.getpid(), signal.SIGINT)).start()
        started = time.monotonic()
        try:
            with pytest.raises(JudgeInterrupted, match="no new judge call sent") as stopped:
                engine.grade_many(requests)
        finally:
            engine.close()
        took = time.monotonic() - started
        calls = _calls(server)
    assert stopped.value.status == 130 and took < 5 and calls < len(requests)
    assert "the cache is off, so nothing is kept and a rerun repeats every call" in str(stopped.value)
    assert signal.getsignal(signal.SIGINT) is before


def test_a_few_requests_that_always_fail_do_not_trip_the_outage_breaker(small_data_dir: Path) -> None:
    # Two responses the server always fails (4 requests, 20 attempts in a row at the end) are no
    # outage: the breaker needs its failures from at least half as many different requests.
    item = load_siuo(small_data_dir).gen[0]
    responses = ["always fails 1", "always fails 2", *(f"fine {n}" for n in range(20))]

    def plan(kind: str, response: str, attempt: int) -> str | None:
        return "500" if response.startswith("always fails") else None

    with JudgeServer(fault_for=plan, declines=False) as server:
        config = JudgeConfig(base_url=server.base_url, cache_path=None, backoff_s=0.01, outage_hold_s=60.0)
        engine = JudgeEngine(config)
        started = time.monotonic()
        try:
            outcomes = engine.grade_many(gen_judge_requests(item, responses))
        finally:
            engine.close()
        took = time.monotonic() - started
    failed = [outcome for outcome in outcomes if outcome.error]
    assert len(failed) == 4 and all(outcome.attempts == config.max_attempts for outcome in failed)
    assert all(outcome.verdict is not None for outcome in outcomes if not outcome.error)
    assert took < 20, took  # never held for the outage hold
