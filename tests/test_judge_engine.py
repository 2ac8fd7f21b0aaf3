"""The judge engine under faults, with its cache, and within its concurrency and rate bounds."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from siuo_task.benchmark.data import load_siuo
from siuo_task.benchmark.prompts import safety_judge_prompt
from siuo_task.benchmark.scoring import gen_judge_requests, siuo_judge_request
from siuo_task.judge.cache import cache_key
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine
from siuo_task.judge.request import JudgeRequest
from tests.helpers.judge_server import JudgeServer, choose_reply

TRANSIENT = ("429", "500", "drop", "stall", "malformed")
PERSISTENT = ("500", "drop")


def plan(kind: str, response: str, attempt: int) -> str | None:
    """Faults named in the response text: 'transient-X' fails once, 'persistent-X' always."""
    name = response.split("-")[1] if "-" in response else ""
    if response.startswith("transient-") and attempt == 1:
        return name
    if response.startswith("persistent-"):
        return name
    return response if response in ("empty", "decline") else None


RESPONSES = [f"transient-{f}" for f in TRANSIENT] + [f"persistent-{f}" for f in PERSISTENT]
RESPONSES += ["empty", "decline", "healthy one", "healthy two"]


def _config(server: JudgeServer, cache: Path | None, **overrides: object) -> JudgeConfig:
    settings = {"timeout_s": 1.0, "max_attempts": 3, "backoff_s": 0.05, "concurrency": 8}
    settings.update(overrides)
    return JudgeConfig(base_url=server.base_url, api_key="sk-engine-test-0000000", cache_path=cache, **settings)


def _requests(data_dir: Path) -> list[JudgeRequest]:
    item = load_siuo(data_dir).gen[0]
    return gen_judge_requests(item, RESPONSES)


def _response_of(request: JudgeRequest) -> str:
    return request.prompt.split("<response>\n", 1)[1].split("\n</response>", 1)[0]


def test_every_fault_ends_as_a_verdict_or_a_recorded_error(small_data_dir: Path, tmp_path: Path) -> None:
    requests = _requests(small_data_dir)
    with JudgeServer(fault_for=plan, stall_s=2.5) as server:
        outcomes = JudgeEngine(_config(server, tmp_path / "cache.sqlite3")).grade_many(requests)
    assert len(outcomes) == len(requests)
    for request, outcome in zip(requests, outcomes, strict=True):
        response = _response_of(request)
        assert (outcome.verdict is None) == (outcome.error is not None), response
        if response.startswith("transient-") or response.startswith("healthy"):
            intended = choose_reply(request.kind, response)[1]
            if intended is None:  # the server's own decline for this text
                assert outcome.verdict is None and "no " in outcome.error
                assert outcome.declined
            else:
                assert outcome.verdict == intended, response
            assert outcome.attempts == (2 if response.startswith("transient-") else 1), response
        elif response.startswith("persistent-"):
            assert outcome.verdict is None and outcome.attempts == 3
            assert outcome.error.startswith("judge call failed after 3 attempt(s)")
        else:
            assert outcome.verdict is None and outcome.attempts == 1
            assert outcome.declined == (response == "decline")
            assert outcome.error in (
                "judge returned an empty reply",
                f"no {request.kind} verdict: the judge declined to grade",
            )


def test_rerun_on_a_healthy_server_fills_exactly_the_gaps(small_data_dir: Path, tmp_path: Path) -> None:
    requests = _requests(small_data_dir)
    cache = tmp_path / "cache.sqlite3"
    with JudgeServer(fault_for=plan, stall_s=2.5) as server:
        first = JudgeEngine(_config(server, cache)).grade_many(requests)
        gaps = {(r.kind, _response_of(r)) for r, o in zip(requests, first, strict=True) if o.verdict is None}
        server.set_faults(None)
        server.attempts.clear()
        second = JudgeEngine(_config(server, cache)).grade_many(requests)
        assert set(server.attempts) == gaps  # only the failed calls were made again
    assert [o.cached for o in second] == [(r.kind, _response_of(r)) not in gaps for r in requests]
    with JudgeServer() as clean_server:
        clean = JudgeEngine(_config(clean_server, tmp_path / "clean.sqlite3")).grade_many(requests)
    assert [o.verdict for o in second] == [o.verdict for o in clean]
    assert [o.raw_text for o in second] == [o.raw_text for o in clean]


def test_retry_after_is_honoured_over_backoff(small_data_dir: Path) -> None:
    item = load_siuo(small_data_dir).gen[0]
    request = gen_judge_requests(item, ["transient-429"])[0]
    with JudgeServer(fault_for=plan) as server:
        # A 60 s backoff would time the test out; the server's Retry-After of 0.2 s must win.
        engine = JudgeEngine(_config(server, None, backoff_s=60.0))
        started = time.monotonic()
        outcome = engine.grade(request)
        elapsed = time.monotonic() - started
    assert outcome.attempts == 2 and outcome.error is None
    assert 0.2 <= elapsed < 30


def test_only_parsed_verdicts_are_cached(small_data_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache.sqlite3"
    with JudgeServer(fault_for=plan, stall_s=2.5) as server:
        outcomes = JudgeEngine(_config(server, cache)).grade_many(_requests(small_data_dir))
    with sqlite3.connect(cache) as db:
        rows = db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]
    assert rows == sum(1 for o in outcomes if o.verdict is not None)


def test_cache_key_covers_what_decides_the_verdict() -> None:
    base = {
        "model": "m",
        "endpoint": "http://h/v1",
        "prompt": "p",
        "image_sha256": "i",
        "temperature": 0.0,
        "max_tokens": 100,
        "prompt_version": "v",
    }
    keys = {cache_key(**base)}
    for field, other in [("model", "m2"), ("endpoint", "http://g/v1"), ("prompt", "q"), ("image_sha256", "j"),
                         ("temperature", 0.5), ("max_tokens", 200), ("prompt_version", "w")]:  # fmt: skip
        keys.add(cache_key(**{**base, field: other}))
    assert len(keys) == 8


_WORKER = """
import json, sys
from pathlib import Path
from siuo_task.benchmark.data import load_siuo
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine
from siuo_task.benchmark.scoring import gen_judge_requests, siuo_judge_request
base_url, cache, data_dir, rank = sys.argv[1:5]
config = JudgeConfig(base_url=base_url, api_key="sk-x-000000", concurrency=3, cache_path=Path(cache))
item = load_siuo(data_dir).gen[int(rank)]
requests = gen_judge_requests(item, [f"rank {rank} response {n}" for n in range(6)])
outcomes = JudgeEngine(config).grade_many(requests)
print(json.dumps(sum(1 for o in outcomes if o.verdict is not None)))
"""


def test_bound_and_cache_hold_across_processes(small_data_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "shared-cache.sqlite3"
    with JudgeServer(latency_s=0.15) as server:
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", _WORKER, server.base_url, str(cache), str(small_data_dir), str(rank)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for rank in range(3)
        ]
        verdicts = [int(json.loads(worker.communicate(timeout=120)[0])) for worker in workers]
        peak, calls = server.peak_in_flight, sum(server.attempts.values())
    assert calls == 3 * 12
    assert peak <= 3, f"the server saw {peak} requests in flight with a bound of 3"
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0] == sum(verdicts)


def test_requests_per_minute_cap_spaces_requests(small_data_dir: Path) -> None:
    item = load_siuo(small_data_dir).gen[0]
    requests = [
        siuo_judge_request("safety", safety_judge_prompt(item.question, "w", "r", f"x{n}"), item.image_path)
        for n in range(6)
    ]
    with JudgeServer() as server:
        engine = JudgeEngine(_config(server, None, requests_per_minute=600))  # one per 0.1 s
        started = time.monotonic()
        engine.grade_many(requests)
        elapsed = time.monotonic() - started
    assert elapsed >= 0.45  # six starts spaced 0.1 s apart need at least 0.5 s, less clock slack


def test_identical_requests_are_sent_once_in_flight_or_not(small_data_dir: Path) -> None:
    item = load_siuo(small_data_dir).gen[0]
    distinct = gen_judge_requests(item, ["alpha", "beta"])  # 4 distinct requests
    with JudgeServer(latency_s=0.2, declines=False) as server:
        engine = JudgeEngine(_config(server, None, concurrency=8))  # cache off
        together = engine.grade_many(distinct * 5)  # 20 requests in flight together
        later = engine.grade_many(distinct)  # the same again, after the first answers
        calls = sum(server.attempts.values())
    assert calls == 4
    assert sum(o.coalesced for o in together) == 16 and all(o.coalesced for o in later)
    assert sum(o.attempts for o in together + later) == 4
    assert [o.verdict for o in together[:4]] * 5 == [o.verdict for o in together]
    assert all(o.prompt_tokens == 0 for o in together + later if o.coalesced)


def test_concurrent_requests_adapt_to_a_reasoning_model_without_errors(small_data_dir: Path) -> None:
    requests = gen_judge_requests(load_siuo(small_data_dir).gen[0], [f"r{n}" for n in range(8)])
    with JudgeServer(reject_params=frozenset({"max_tokens", "temperature"}), latency_s=0.05, declines=False) as server:
        outcomes = JudgeEngine(_config(server, None, concurrency=8)).grade_many(requests)  # no probe first
    assert all(o.error is None for o in outcomes), [o.error for o in outcomes if o.error]
    assert all(o.attempts == 1 for o in outcomes)  # a rejected parameter is not a try
