"""HTTP 429 is back-pressure, not failure: real ``siuo-eval check`` / ``judge`` processes against
a loopback judge that rate-limits (tests/helpers/judge_server.RateLimit) wait and finish, spend
none of their attempts on 429s, and give up only after SIUO_JUDGE_RATE_LIMIT_WAIT, with judge
errors that say so; processes that share one limit and nothing else all finish."""

from __future__ import annotations

import subprocess
import sys
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from siuo_task.harness.preflight import check_judge_before_generation
from siuo_task.judge.backpressure import PACE_DECREASE, Backpressure, RateLimitGiveUp
from siuo_task.judge.config import DEFAULT_RATE_LIMIT_WAIT_S, JudgeConfig
from siuo_task.judge.limits import ProviderHold
from siuo_task.judge.transport import is_rate_limited, is_refusal, retry_after_s
from siuo_task.settings import Settings
from tests.helpers.chat_server import ChatHandler, LoopbackServer, send_json
from tests.helpers.cli_runs import SECRET, authors_rows, judge_env, read_run, write_json
from tests.helpers.in_process import siuo_eval_in_process
from tests.helpers.judge_server import JudgeServer, RateLimit, choose_reply

WAITING = "waiting on the provider's rate limit"


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stderr.strip().splitlines()[-1]


def _all_verdicts_as_served(samples: list[dict[str, Any]]) -> None:
    """Every verdict is the one the server's reply for that response means (none lost or made up)."""
    for sample in samples:
        for response in sample["siuo"]["responses"]:
            text = response["response"]
            assert response["safety_judge"]["verdict"] == choose_reply("safety", text, declines=False)[1]
            assert response["effectiveness_judge"]["verdict"] == choose_reply("effectiveness", text, declines=False)[1]


def test_check_waits_out_a_429_on_its_first_call(small_data_dir: Path) -> None:
    # The measured old behaviour: exit 2 within 3 s (two tries 1 s apart, Retry-After ignored).
    with JudgeServer(rate_limit=RateLimit(storm_s=1.5)) as server:
        proc = siuo_eval_in_process("check", env=judge_env(small_data_dir, server.base_url, "off"))
        throttled, probes = server.throttled_calls, server.log.probes
    assert proc.returncode == 0, proc.stderr
    assert throttled >= 1 and len(probes) == 1
    waiting = [line for line in proc.stderr.splitlines() if WAITING in line]
    assert len(waiting) == 1, proc.stderr
    assert server.base_url in waiting[0] and "at most 900 s (SIUO_JUDGE_RATE_LIMIT_WAIT)" in waiting[0]
    assert SECRET not in proc.stderr + proc.stdout


def test_every_harness_check_before_generation_waits_on_429(
    small_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What each harness's task calls before generating (lmms-eval, lm-eval, Inspect,
    VLMEvalKit): before, a 429 ended the run there."""
    with JudgeServer(rate_limit=RateLimit(storm_s=1.0)) as server:
        config = JudgeConfig(base_url=server.base_url, api_key=SECRET, cache_path=None, backoff_s=0.01)
        check_judge_before_generation(config, Settings({}), str(small_data_dir))
        throttled, probes = server.throttled_calls, server.log.probes
    lines = capsys.readouterr().err.splitlines()
    assert throttled >= 1 and len(probes) == 1
    assert [line for line in lines if WAITING in line] == [
        f"siuo-task: the judge endpoint {server.base_url} answered HTTP 429 (rate limited): {WAITING}, at most "
        "900 s (SIUO_JUDGE_RATE_LIMIT_WAIT) ..."
    ]
    assert lines[-1].startswith(f"siuo-task: judge: HTTP 200 from {server.base_url}")


def test_check_gives_up_after_the_wait_budget_naming_it(small_data_dir: Path) -> None:
    with JudgeServer(rate_limit=RateLimit(storm_s=600)) as server:
        env = judge_env(small_data_dir, server.base_url, "off", SIUO_JUDGE_RATE_LIMIT_WAIT="1")
        proc = siuo_eval_in_process("check", env=env)
        throttled = server.throttled_calls
    last = _last_line(proc)
    assert proc.returncode == 2, proc.stderr
    assert f"rate limited: the judge endpoint {server.base_url} answered HTTP 429" in last, last
    assert "SIUO_JUDGE_RATE_LIMIT_WAIT=1 s" in last and "set SIUO_JUDGE_RATE_LIMIT_WAIT to more seconds" in last
    assert 2 <= throttled <= 5  # it waited (Retry-After, capped by the budget) instead of hammering


@pytest.mark.parametrize("retry_after", [True, False], ids=["retry-after", "no-retry-after"])
def test_a_429_storm_mid_run_leaves_no_judge_error(small_data_dir: Path, tmp_path: Path, retry_after: bool) -> None:
    """One attempt per call (SIUO_JUDGE_MAX_ATTEMPTS=1): before, every call answered 429 was a
    judge error; now the storm's 429s are waited out (Retry-After, else backoff) and spend none."""
    source = write_json(tmp_path / "authors.json", authors_rows(count_per_category=2, responses=3))
    limit = RateLimit(storm_s=2.0, storm_after_calls=30, retry_after=retry_after)
    with JudgeServer(declines=False, latency_s=0.02, rate_limit=limit) as server:
        # A breaker that opened on two failures and gave up after 0.5 s would end this run: 429s
        # are not outages.
        outage = {"SIUO_JUDGE_OUTAGE_FAILURES": "2", "SIUO_JUDGE_OUTAGE_HOLD": "0.5"}
        env = judge_env(small_data_dir, server.base_url, tmp_path / "c.sqlite3", SIUO_JUDGE_MAX_ATTEMPTS="1", **outage)
        proc = siuo_eval_in_process("judge", source, "--output", tmp_path / "out", env=env)
        throttled = server.throttled_calls
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The storm was met (on a loaded machine as few as one call may be in flight when it starts),
    # and with one attempt per call each 429 would have been a judge error before.
    assert throttled >= 1, throttled
    results, samples = read_run(tmp_path / "out")
    assert results["judge_errors"] == 0 and results["n_items"] == 18
    _all_verdicts_as_served(samples)
    assert results["usage"]["calls"] >= 2 * 18 * 3 + throttled  # the 429s count as the calls they were
    assert "rate-limited, waiting" in proc.stderr  # the progress bar said why it stood still
    assert WAITING not in proc.stderr  # the check before judging was answered at once


def test_rate_limited_past_the_budget_gives_judge_errors_that_say_so(small_data_dir: Path, tmp_path: Path) -> None:
    source = write_json(tmp_path / "authors.json", authors_rows(count_per_category=2, responses=3))
    total = 2 * 18 * 3
    # The check's call is answered, then the provider answers only 429 for longer than the budget.
    limit = RateLimit(storm_s=600, storm_after_calls=1)
    with JudgeServer(declines=False, rate_limit=limit) as server:
        env = judge_env(small_data_dir, server.base_url, tmp_path / "c.sqlite3", SIUO_JUDGE_RATE_LIMIT_WAIT="1.5")
        proc = siuo_eval_in_process("judge", source, "--output", tmp_path / "out", env=env)
        throttled = server.throttled_calls
    assert proc.returncode == 1, proc.stderr[-3000:]
    results, samples = read_run(tmp_path / "out")
    assert results["judge_errors"] == total - 1  # the check's answer is the only verdict
    errors = [
        judged["error"]
        for sample in samples
        for response in sample["siuo"]["responses"]
        for judged in (response["safety_judge"], response["effectiveness_judge"])
        if judged and judged.get("error")
    ]
    assert len(errors) == total - 1
    assert all(f"rate limited: the judge endpoint {server.base_url} answered HTTP 429" in error for error in errors)
    assert all("SIUO_JUDGE_RATE_LIMIT_WAIT=1.5 s" in error for error in errors)
    assert "running the same command again retries only those" in _last_line(proc)
    assert throttled < total  # the requests left when it gave up ended without a call
    assert SECRET not in proc.stderr + proc.stdout


def _machine_env(machine: Path, data_dir: Path, server: JudgeServer) -> dict[str, str]:
    """A judge process as on its own machine: its own TMPDIR (no shared slot files) and cache."""
    (machine / "tmp").mkdir(parents=True)
    return judge_env(data_dir, server.base_url, machine / "c.sqlite3", TMPDIR=str(machine / "tmp"))


def test_processes_sharing_one_limit_and_nothing_else_all_finish(small_data_dir: Path, tmp_path: Path) -> None:
    # 20 requests a second for both, at most 2 at once: each process alone would send far more.
    limit = RateLimit(per_minute=1200, burst=2)
    command = [sys.executable, "-m", "siuo_task.commands.cli", "judge"]
    with JudgeServer(declines=False, rate_limit=limit) as server:
        procs = []
        for number in range(2):
            machine = tmp_path / f"machine-{number}"
            source = write_json(
                machine / "run.json", authors_rows(count_per_category=1, responses=2, tag=f"m{number} ")
            )
            env = _machine_env(machine, small_data_dir, server)
            args = [*command, str(source), "--output", str(machine / "out")]
            procs.append(subprocess.Popen(args, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        outputs = [proc.communicate(timeout=300) for proc in procs]
        throttled = server.throttled_calls
    assert throttled >= 1  # the limit was reached: both had to adapt to it
    for number, (proc, (_, stderr)) in enumerate(zip(procs, outputs, strict=True)):
        assert proc.returncode == 0, stderr[-3000:]
        results, samples = read_run(tmp_path / f"machine-{number}" / "out")
        assert results["judge_errors"] == 0 and results["n_items"] == 9
        _all_verdicts_as_served(samples)


class _OutOfQuota(ChatHandler):
    chat_path = "/v1/chat/completions"

    def chat(self, body: dict[str, Any]) -> None:
        error = {
            "message": "You exceeded your current quota.",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
        }
        send_json(self, 429, {"error": error})


def test_a_429_for_an_account_out_of_quota_is_not_waited_on(small_data_dir: Path) -> None:
    with LoopbackServer(_OutOfQuota) as server:
        proc = siuo_eval_in_process("check", env=judge_env(small_data_dir, server.base_url, "off"))
    last = _last_line(proc)
    assert proc.returncode == 2 and "HTTP 429 insufficient_quota" in last and "waiting does not change" in last
    assert WAITING not in proc.stderr


def _rate_limit_error(headers: dict[str, str], body: object = None) -> openai.RateLimitError:
    """The error the openai client raises for a 429 with these headers (what the engine reads)."""
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(429, headers=headers, request=request)
    return openai.RateLimitError("rate limited", response=response, body=body)


def test_retry_after_headers_are_read() -> None:
    assert retry_after_s(_rate_limit_error({"retry-after-ms": "250", "retry-after": "3"})) == 0.25
    assert retry_after_s(_rate_limit_error({"retry-after": "3"})) == 3.0
    past = retry_after_s(_rate_limit_error({"retry-after": formatdate(time.time() - 60, usegmt=True)}))
    assert past == 0.0  # an HTTP date already past: no wait
    later = formatdate(time.time() + 30, usegmt=True)
    assert 28 <= (retry_after_s(_rate_limit_error({"retry-after": later})) or 0) <= 30
    assert retry_after_s(_rate_limit_error({"retry-after": "soon"})) is None
    assert retry_after_s(_rate_limit_error({})) is None
    assert retry_after_s(_rate_limit_error({"retry-after": "7200"}), cap_s=900) == 900
    assert is_rate_limited(_rate_limit_error({})) and not is_refusal(_rate_limit_error({}))
    quota = _rate_limit_error({}, {"error": {"code": "insufficient_quota", "message": "no credit"}})
    assert is_refusal(quota) and not is_rate_limited(quota)
    too_large = "Request too large for gpt-4o-mini on tokens per min (TPM): Limit 30000, Requested 45000."
    one_too_large = _rate_limit_error({}, {"error": {"code": "rate_limit_exceeded", "message": too_large}})
    assert not is_rate_limited(one_too_large) and not is_refusal(one_too_large)  # tried as a failure


def test_rate_limit_wait_setting() -> None:
    env = {"SIUO_JUDGE_BASE_URL": "http://127.0.0.1:9/v1"}
    assert JudgeConfig.from_env(env).rate_limit_wait_s == DEFAULT_RATE_LIMIT_WAIT_S >= 600
    assert JudgeConfig.from_env({**env, "SIUO_JUDGE_RATE_LIMIT_WAIT": "3600"}).rate_limit_wait_s == 3600
    with pytest.raises(Exception, match="SIUO_JUDGE_RATE_LIMIT_WAIT='forever' is not a number"):
        JudgeConfig.from_env({**env, "SIUO_JUDGE_RATE_LIMIT_WAIT": "forever"})


def _sent(pressure: Backpressure, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        with pressure.sending() as sent_at:
            times.append(sent_at)
    return times


def test_a_burst_of_429s_to_calls_already_sent_slows_down_once() -> None:
    pressure = Backpressure("http://127.0.0.1:9/v1", ceiling=8, budget_s=3600, backoff_s=0.01)
    assert pressure.pace is None and pressure.window == 8  # nothing held back before a 429
    in_flight = _sent(pressure, 8)
    for sent_at in in_flight:
        pressure.throttled(sent_at, retry_after_s=0.0)
    first = pressure.pace
    assert first is not None and pressure.window == 4  # one slow-down for the eight 429s
    (later,) = _sent(pressure, 1)
    pressure.throttled(later, retry_after_s=0.0)  # a call sent after it: a new signal
    assert pressure.pace == pytest.approx(first * PACE_DECREASE) and pressure.window == 2
    pressure.replied()
    assert pressure.gave_up is None


def test_the_wait_budget_counts_from_the_first_429_after_the_last_reply() -> None:
    pressure = Backpressure("http://127.0.0.1:9/v1", ceiling=4, budget_s=0.0, backoff_s=0.01)
    (sent_at,) = _sent(pressure, 1)
    with pytest.raises(RateLimitGiveUp, match=r"answered HTTP 429 \(too many requests\) to every call for 0 s"):
        pressure.throttled(sent_at, retry_after_s=None)
    with pytest.raises(RateLimitGiveUp):  # every call after it ends at once, without being sent
        _sent(pressure, 1)


def test_a_spent_request_window_slows_down_before_any_429() -> None:
    pressure = Backpressure("http://127.0.0.1:9/v1", ceiling=8, budget_s=3600, backoff_s=0.01)
    (sent_at,) = _sent(pressure, 1)
    pressure.read_headers({"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "5"}, sent_at)
    assert pressure.pace is None  # requests left: nothing to do
    pressure.read_headers({"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "0"}, sent_at)
    assert pressure.pace is not None and pressure.pace <= 10.0 and pressure.window == 4  # at most 600 / 60 s


def test_the_provider_hold_lasts_until_one_request_is_back(tmp_path: Path) -> None:
    hold = ProviderHold(tmp_path)
    spent = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "60s"}
    # 600 a minute: one request is back after 0.1 s, not when the whole window is (60 s).
    assert hold.note({**spent, "x-ratelimit-limit-requests": "600"}, typical_tokens=1000) == pytest.approx(0.1)
    assert hold.note(spent, typical_tokens=1000) == 60.0  # no limit announced: the reset
