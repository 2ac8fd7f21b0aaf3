"""Fail fast and clearly: `siuo-eval check` makes one real judge call; a refusing or absent endpoint stops
`siuo-eval judge` within seconds, naming the endpoint and the cause; reasoning-model parameters adapt."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from tests.helpers.cli_runs import SECRET, authors_rows, judge_env, read_run, write_json
from tests.helpers.in_process import siuo_eval_in_process
from tests.helpers.judge_server import SERVED_MODEL, JudgeServer


def _closed_port_url() -> str:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_check_makes_one_real_call_with_an_image(small_data_dir: Path) -> None:
    with JudgeServer() as server:
        proc = siuo_eval_in_process("check", env=judge_env(small_data_dir, server.base_url, "off"))
        probes, exchanges = server.log.probes, server.log.exchanges
    assert proc.returncode == 0, proc.stderr
    assert len(probes) == 1 and probes[0].image_mime == "image/png" and not exchanges
    assert [body["model"] for body in server.bodies] == ["gpt-4o-mini-2024-07-18"]  # the default judge
    assert f"HTTP 200 from {server.base_url}, model '{SERVED_MODEL}'" in proc.stderr
    assert " ms for one call with an image" in proc.stderr


@pytest.mark.parametrize(
    ("server_options", "url_suffix", "model", "message"),
    [
        ({"fail_status": 401}, "", None, r"refused the API key \(HTTP 401"),
        ({"fail_status": 403}, "", None, r"refused the API key \(HTTP 403"),
        ({}, "/../", None, r"has no chat-completions API \(HTTP 404.*does SIUO_JUDGE_BASE_URL end in '/v1'"),
        ({"only_model": "served-model"}, "", "gpt-9", r"does not serve the model 'gpt-9' \(HTTP 404"),
    ],
)
def test_a_refusing_endpoint_is_named_and_never_retried(
    small_data_dir: Path, tmp_path: Path, server_options: dict, url_suffix: str, model: str | None, message: str
) -> None:
    source = write_json(tmp_path / "authors.json", authors_rows())
    with JudgeServer(**server_options) as server:
        base_url = server.base_url.removesuffix("/v1") if url_suffix else server.base_url
        extra = {"SIUO_JUDGE_MODEL": model} if model else {}
        env = judge_env(small_data_dir, base_url, tmp_path / "c.sqlite3", **extra)
        check = siuo_eval_in_process("check", env=env)
        judged = siuo_eval_in_process("judge", source, "--output", tmp_path / "out", env=env)
        requests = len(server.bodies)  # chat-completions requests that reached the handler
    for proc in (check, judged):
        last = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode == 2 and re.search(message, last), proc.stderr
        assert base_url in last and "again" not in last and SECRET not in proc.stderr + proc.stdout
    assert requests <= 2  # one probe each: no retries, no pass of doomed calls
    assert not (tmp_path / "out").exists()


def test_an_unreachable_endpoint_stops_within_seconds(small_data_dir: Path, tmp_path: Path) -> None:
    url = _closed_port_url()
    source = write_json(tmp_path / "authors.json", authors_rows())
    started = time.monotonic()
    proc = siuo_eval_in_process(
        "judge", source, "--output", tmp_path / "out", env=judge_env(small_data_dir, url, "off")
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 2 and f"cannot reach the judge endpoint {url}" in proc.stderr.splitlines()[-1]
    assert elapsed < 60  # no retry budget spent per request (the measured old behaviour: >120 s)


def test_reasoning_model_parameters_adapt_and_are_named(small_data_dir: Path, tmp_path: Path) -> None:
    source = write_json(tmp_path / "authors.json", authors_rows(count_per_category=1, responses=1))
    with JudgeServer(reject_params=frozenset({"max_tokens", "temperature"}), declines=False) as server:
        env = judge_env(small_data_dir, server.base_url, "off", SIUO_JUDGE_MODEL="o4-mini")
        check = siuo_eval_in_process("check", env=env)
        judged = siuo_eval_in_process("judge", source, "--output", tmp_path / "out", env=env)
        accepted = [body for body in server.bodies if "max_tokens" not in body and "temperature" not in body]
    assert check.returncode == 0 and judged.returncode == 0, judged.stderr
    for proc in (check, judged):
        assert "o4-mini rejects 'max_tokens': sending 'max_completion_tokens' instead" in proc.stderr
        assert "o4-mini rejects 'temperature'" in proc.stderr
    assert all(body["max_completion_tokens"] == 1024 for body in accepted)
    results, _ = read_run(tmp_path / "out")
    assert results["judge_errors"] == 0 and results["n_items"] == 9


def test_a_declining_judge_stops_early_with_advice(small_data_dir: Path, tmp_path: Path) -> None:
    source = write_json(tmp_path / "authors.json", authors_rows())
    with JudgeServer(fault_for=lambda kind, response, attempt: "decline") as server:
        env = judge_env(
            small_data_dir,
            server.base_url,
            "off",
            SIUO_JUDGE_DECLINE_STOP="0.5",
            SIUO_JUDGE_DECLINE_WINDOW="12",
            SIUO_JUDGE_CONCURRENCY="2",
        )
        proc = siuo_eval_in_process("judge", source, "--output", tmp_path / "out", env=env)
        calls = sum(server.attempts.values())
    last = proc.stderr.strip().splitlines()[-1]
    # Each kind on its own window: 6 refusals of one kind stop the pass, before its 12 are in.
    kind = r"(safety|effectiveness)"
    assert proc.returncode == 2 and re.search(rf"declined 6 of the 6 {kind} gradings it answered", last), last
    assert "the stop is at 6 refusals among the first 12 calls of one kind" in last
    assert "SIUO_JUDGE_MODEL=" in last and "SIUO_JUDGE_BASE_URL=" in last and "SIUO_JUDGE_DECLINE_STOP=off" in last
    assert calls < 20 < 2 * 18 * 3
    with JudgeServer(fault_for=lambda kind, response, attempt: "decline") as server:
        off = judge_env(small_data_dir, server.base_url, "off", SIUO_JUDGE_DECLINE_STOP="off")
        kept_going = siuo_eval_in_process("judge", source, "--output", tmp_path / "out", env=off)
    results, samples = read_run(tmp_path / "out")
    assert kept_going.returncode == 1 and results["usage"]["declines"] == results["judge_errors"] == 2 * 18 * 3
    assert all(r["safety_judge"]["declined"] for s in samples for r in s["siuo"]["responses"])
