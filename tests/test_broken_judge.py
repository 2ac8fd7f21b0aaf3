"""A broken judge never costs GPU time: each harness checks its judge with one real call before
generating, and a judge failing mid-run keeps every response, ends the run non-zero and names
the one command that finishes the scoring (issue 16). The model under test is each harness's
OpenAI-compatible model class pointed at a loopback model server, so model requests are counted."""

from __future__ import annotations

import json
import shlex
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from siuo_task.harness.preflight import PROBE_RESPONSE
from tests.helpers.cli_runs import SECRET, read_run
from tests.helpers.harness_cli import harness_command, judged_offline_env
from tests.helpers.in_process import siuo_eval_in_process
from tests.helpers.judge_server import JudgeServer
from tests.helpers.model_server import ModelServer


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _env(data_dir: Path, judge_url: str, home: Path, model: ModelServer, **extra: str) -> dict[str, str]:
    return judged_offline_env(data_dir, home, model.base_url, judge_url, SIUO_JUDGE_BACKOFF="0.01", **extra)


def _command(harness: str, model: ModelServer, out: Path, task: str = "siuo_gen_greedy") -> list[str]:
    return harness_command(harness, model.base_url, out, generation_only=False, tasks=(task,), api_nproc=4)


# lmms-eval's check before generation is the no-verdict case below; the kinds of broken
# endpoint (closed port, a URL without /v1, a refused key) are the shared probe's, each tested
# through `siuo-eval check` and `judge` in test_judge_probe.py.
@pytest.mark.parametrize("harness", ["lm-eval", "VLMEvalKit", "Inspect"])
def test_a_broken_judge_stops_the_run_before_any_generation(harness: str, small_data_dir: Path, tmp_path: Path) -> None:
    cause = "cannot reach the judge endpoint"
    with ModelServer() as model:
        url = _closed_port_url()
        proc = subprocess.run(
            _command(harness, model, tmp_path / "out"),
            env=_env(small_data_dir, url, tmp_path, model),
            capture_output=True,
            cwd=tmp_path,
            text=True,
            timeout=600,
        )
        model_requests = sum(model.prompts.values())
    assert proc.returncode != 0 and model_requests == 0, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert cause in last and url in last, proc.stderr[-3000:]
    assert SECRET not in proc.stdout + proc.stderr


@pytest.mark.parametrize("harness", ["lmms-eval", "lm-eval", "Inspect", "VLMEvalKit"])
def test_a_judge_failing_mid_run_keeps_every_response(harness: str, small_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"

    def every_third(kind: str, response: str, attempt: int) -> str | None:
        return "500" if sum(map(ord, response)) % 3 == 0 else None

    with ModelServer() as model, JudgeServer(fault_for=every_third, declines=False) as judge:
        env = _env(small_data_dir, judge.base_url, tmp_path, model, SIUO_JUDGE_MAX_ATTEMPTS="1")
        proc = subprocess.run(
            _command(harness, model, out), env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path
        )
        generated = sum(model.prompts.values())
        assert proc.returncode == 1 and generated == 18, proc.stderr[-3000:]
        if harness == "lmms-eval":
            samples = next(out.rglob("*_samples_siuo_gen_greedy.jsonl"))
            assert len(samples.read_text().splitlines()) == 18  # every response kept
        finish = proc.stderr.strip().splitlines()[-2].strip()
        assert finish == f"siuo-eval judge {out} --output {out}-judged", proc.stderr[-2000:]
        if harness != "VLMEvalKit":  # which names the banner by its dataset
            assert "\nSIUO siuo_gen_greedy: " in proc.stderr  # the task that ran, by its own name
        judge.set_faults(None)  # the judge is healthy again
        finished = siuo_eval_in_process(*finish.split()[1:], env=env)  # the command named, in this process
        assert sum(model.prompts.values()) == generated  # nothing generated again
        intended = {(e.kind, e.response): e.intended for e in judge.log.exchanges}
    assert finished.returncode == 0, finished.stderr
    results, judged = read_run(next(path.parent for path in (tmp_path / "out-judged").rglob("results.json")))
    assert results["judge_errors"] == 0 and results["n_items"] == 18
    for sample in judged:
        for response in sample["siuo"]["responses"]:
            if response["safety_judge"]:
                assert response["safety_judge"]["verdict"] == intended[("safety", response["answer"])]


def test_a_judge_that_answers_without_grading_stops_a_judged_run_before_any_model_request(
    small_data_dir: Path, tmp_path: Path
) -> None:
    poem = "Sure! Here is a short poem about cats"

    def chatty(kind: str, response: str, attempt: int) -> tuple[str, None]:
        return poem, None

    with ModelServer() as model, JudgeServer(reply_for=chatty) as judge:
        proc = subprocess.run(
            _command("lmms-eval", model, tmp_path / "out"),
            env=_env(small_data_dir, judge.base_url, tmp_path, model),
            capture_output=True,
            cwd=tmp_path,
            text=True,
            timeout=600,
        )
        model_requests = sum(model.prompts.values())
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and model_requests == 0, proc.stderr[-3000:]
    assert f"with a reply with no safety verdict: '{poem}'" in last and judge.base_url in last, last
    # Our line at once: no lmms-eval retries of the hook, no RetryError, no traceback.
    assert "RetryError" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert SECRET not in proc.stdout + proc.stderr


@dataclass
class Interrupted:
    """A harness run sent SIGINT once the judge had answered 4 gradings."""

    proc: subprocess.Popen[str]
    stdout: str
    stderr: str
    took: float  # seconds from the signal to the process's end
    sent_after: int  # judge attempts that arrived after the signal (0.5 s later)

    @property
    def last(self) -> str:
        return self.stderr.strip().splitlines()[-1]


def _interrupt_while_judging(command: list[str], env: dict[str, str], cwd: Path, judge: JudgeServer) -> Interrupted:
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    proc = subprocess.Popen(command, env=env, text=True, cwd=cwd, **pipes)
    deadline = time.monotonic() + 300
    while len(judge.log.exchanges) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before judging could be interrupted"
    proc.send_signal(signal.SIGINT)
    signalled, at_signal = time.monotonic(), sum(judge.attempts.values())
    stdout, stderr = proc.communicate(timeout=60)
    took = time.monotonic() - signalled
    time.sleep(0.5)
    return Interrupted(proc, stdout, stderr, took, sum(judge.attempts.values()) - at_signal)


def _assert_stopped_in_one_line(run: Interrupted, answered: int, cache: Path) -> None:
    assert run.proc.returncode == 130 and run.took < 5, (run.took, run.stdout[-2000:], run.stderr[-3000:])
    assert "Traceback" not in run.stdout + run.stderr, run.stderr[-3000:]
    assert run.sent_after <= 2 and answered < 2 * 18, (run.sent_after, answered)  # at most the 2 in flight
    assert run.last.startswith("siuo-task: judging stopped by SIGINT: no new judge call sent"), run.last
    with sqlite3.connect(cache) as kept:  # every verdict received is in the cache for the rerun
        assert kept.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0] == answered


@pytest.mark.slow
@pytest.mark.parametrize("harness", ["lmms-eval", "lm-eval"])
def test_ctrl_c_while_a_harness_judges_ends_it_in_one_line(harness: str, small_data_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "judge-cache.sqlite3"
    with ModelServer() as model, JudgeServer(latency_s=0.5, declines=False) as judge:
        env = _env(
            small_data_dir, judge.base_url, tmp_path, model, SIUO_JUDGE_CACHE=str(cache), SIUO_JUDGE_CONCURRENCY="2"
        )
        command = _command(harness, model, tmp_path / "out")
        run = _interrupt_while_judging(command, env, tmp_path, judge)
        answered = len(judge.log.exchanges)
    _assert_stopped_in_one_line(run, answered, cache)
    # The command as typed: lm-eval inserts its default subcommand ("run") into sys.argv, which
    # the line must not show.
    again = ["python", *command[1:3], *command[3:]]
    assert run.last.endswith(": " + shlex.join(again)), run.last


@pytest.mark.slow
def test_ctrl_c_while_inspect_judges_ends_it_in_one_line_and_eval_retry_resumes(
    small_data_dir: Path, tmp_path: Path
) -> None:
    # Inspect cancels its run on the first SIGINT and writes a cancelled log; the samples already
    # being scored must send no new judge call, and the run must end 130 naming `inspect eval-retry`.
    cache = tmp_path / "judge-cache.sqlite3"
    with ModelServer(sampled=False) as model, JudgeServer(latency_s=0.5, declines=False) as judge:
        env = _env(
            small_data_dir, judge.base_url, tmp_path, model, SIUO_JUDGE_CACHE=str(cache), SIUO_JUDGE_CONCURRENCY="2"
        )
        run = _interrupt_while_judging(_command("Inspect", model, tmp_path / "out"), env, tmp_path, judge)
        first_run = len(judge.log.exchanges)
        answered = {(e.kind, e.response) for e in judge.log.exchanges}
        _assert_stopped_in_one_line(run, len(answered), cache)
        resume = run.last.rsplit(": ", 1)[1]
        assert resume.startswith("inspect eval-retry ") and str(tmp_path / "out") in resume, run.last
        retried = subprocess.run(
            shlex.split(resume), env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600
        )
        asked_again = [e for e in judge.log.exchanges[first_run:] if (e.kind, e.response) in answered]
    assert retried.returncode == 0, retried.stderr[-3000:]
    assert not asked_again, asked_again[:3]  # no finished call repeated: the cache answers them
    assert {(e.kind, e.response) for e in judge.log.exchanges} >= answered and len(judge.log.exchanges) == 2 * 18


def test_a_judge_that_dies_after_its_check_is_given_up_and_every_response_kept(
    small_data_dir: Path, tmp_path: Path
) -> None:
    # Dead right after the check before generation: the outage breaker holds the gradings for
    # SIUO_JUDGE_OUTAGE_HOLD, then the run ends them as judge errors naming the cause, instead of
    # retrying each through all its attempts. No rate is defined, the banner says the scores are
    # meaningless, and the responses are kept for `siuo-eval judge`.
    out = tmp_path / "out"
    after_death = [0]
    lock = threading.Lock()

    def dead(kind: str, response: str, attempt: int) -> str | None:
        if response == PROBE_RESPONSE:
            return None
        with lock:
            after_death[0] += 1
        return "500"

    with ModelServer() as model, JudgeServer(fault_for=dead, declines=False) as judge:
        env = _env(small_data_dir, judge.base_url, tmp_path, model, SIUO_JUDGE_OUTAGE_HOLD="3")
        started = time.monotonic()
        proc = subprocess.run(_command("lmms-eval", model, out), env=env, capture_output=True, text=True, cwd=tmp_path)
        took = time.monotonic() - started
    assert proc.returncode == 1 and sum(model.prompts.values()) == 18, proc.stderr[-3000:]
    assert after_death[0] <= 60 and took < 300, (after_death[0], took)
    samples = next(out.rglob("*_samples_siuo_gen_greedy.jsonl"))
    assert len(samples.read_text().splitlines()) == 18  # every response kept
    results = json.loads(next(out.rglob("*_results.json")).read_text())
    row = results["results"]["siuo_gen_greedy"]
    assert row["judge_errors,none"] == 18 * 2 and "safe_rate,none" not in row  # no number stands for no verdict
    assert results["siuo"]["siuo_gen_greedy"]["safe_rate"] is None
    tail = proc.stderr.strip().splitlines()[-6:]
    assert tail[0] == tail[-1] == "!" * 78, proc.stderr[-3000:]
    assert tail[1] == "SIUO siuo_gen_greedy: EVERY judge call failed (36 of 36); its safety scores are MEANINGLESS."
    assert tail[2].startswith("First cause: ") and ("500" in tail[2] or judge.base_url in tail[2]), tail[2]
    assert tail[-2].strip() == f"siuo-eval judge {out} --output {out}-judged", proc.stderr[-2000:]
