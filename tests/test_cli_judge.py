"""`siuo-eval judge`: re-scoring existing responses, resuming after kill -9, keeping the key secret."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from siuo_task.benchmark.results import GEN_REDUCERS, reduce_values
from tests.helpers.cli_runs import SECRET, judge_env, read_run, siuo_eval, siuo_eval_command
from tests.helpers.fixture_data import per_category, real_items
from tests.helpers.in_process import siuo_eval_in_process
from tests.helpers.judge_server import JudgeServer


def _authors_file(path: Path, count_per_category: int = 2, responses_per_item: int = 3) -> Path:
    gen, _ = real_items()
    keep = set(per_category(gen, count_per_category))
    rows = [
        {**item, "responses": [f"reply {n} to {item['question_id']}" for n in range(responses_per_item)]}
        for item in gen
        if item["question_id"] in keep
    ]
    if responses_per_item > 1:
        rows[0]["responses"][1] = ""  # an empty response: safe, not effective, no judge call
    path.write_text(json.dumps(rows))
    return path


def _env(data_dir: Path, server: JudgeServer, cache: Path | str, **extra: str) -> dict[str, str]:
    return judge_env(data_dir, server.base_url, cache, **extra)


def _judge(
    input_path: Path, output: Path, env: dict[str, str], process: bool = False
) -> subprocess.CompletedProcess[str]:
    """``siuo-eval judge`` in this process, or (``process``) as a real process."""
    run = siuo_eval if process else siuo_eval_in_process
    return run("judge", input_path, "--output", output, env=env)


RATES = ("safe_rate", "effective_rate", "safe_effective_rate")


def test_judges_the_authors_format(small_data_dir: Path, tmp_path: Path) -> None:
    source = _authors_file(tmp_path / "authors.json")
    with JudgeServer() as server:
        proc = _judge(source, tmp_path / "out", _env(small_data_dir, server, tmp_path / "c.sqlite3"), process=True)
        calls = sum(server.attempts.values())
    results, samples = read_run(tmp_path / "out")
    assert len(samples) == 18 and all(len(s["siuo"]["responses"]) == 3 for s in samples)
    assert calls == 2 * (18 * 3 - 1)
    assert results["usage"]["calls"] == calls and results["usage"]["cache_hits"] == 0
    assert results["usage"]["prompt_tokens"] > 0 and results["usage"]["cost_usd"] is None  # unknown model price
    # Top-level numbers are the reductions of the written lines.
    recomputed = reduce_values(samples, GEN_REDUCERS)
    for name in RATES:
        assert results[name] == recomputed[name] and len(results[f"{name}_ci95"]) == 2
    assert set(results["per_category"]) == {s["siuo"]["category"] for s in samples}
    assert results["judge"]["endpoint"] == server.base_url
    # The test server declines some texts: those are judge errors, and the exit code says so;
    # asking the same judge again would buy the same refusals, so no rerun is advised for them.
    assert results["judge_errors"] > 0 and proc.returncode == 1
    assert "held no verdict: asking the same judge again would buy the same replies" in proc.stderr
    assert "retries only those" not in proc.stderr


def test_rejudging_our_own_samples_matches(small_data_dir: Path, tmp_path: Path) -> None:
    source = _authors_file(tmp_path / "authors.json")
    with JudgeServer() as server:
        _judge(source, tmp_path / "first", _env(small_data_dir, server, "off"))
        _judge(tmp_path / "first" / "samples.jsonl", tmp_path / "second", _env(small_data_dir, server, "off"))
    first, _ = read_run(tmp_path / "first")
    second, _ = read_run(tmp_path / "second")
    for name in (*RATES, "judge_errors", "per_category"):
        assert first[name] == second[name]


def test_resume_after_kill_makes_only_the_missing_calls(small_data_dir: Path, tmp_path: Path) -> None:
    source = _authors_file(tmp_path / "authors.json")
    total = 2 * (18 * 3 - 1)
    cache = tmp_path / "cache.sqlite3"
    with JudgeServer(latency_s=0.05) as server:
        env = _env(small_data_dir, server, cache, SIUO_JUDGE_CONCURRENCY="2")
        command = siuo_eval_command("judge", source, "--output", tmp_path / "killed")
        victim = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while sum(server.attempts.values()) < total // 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        first_calls = sum(server.attempts.values())
        assert 0 < first_calls < total, "the run was not interrupted mid-judging"
        server.attempts.clear()
        _judge(source, tmp_path / "resumed", env)
        second_calls = sum(server.attempts.values())
    resumed, _ = read_run(tmp_path / "resumed")
    assert resumed["usage"]["cache_hits"] > 0
    assert second_calls == resumed["usage"]["calls"] == total - resumed["usage"]["cache_hits"]
    with JudgeServer(latency_s=0.0) as fresh_server:
        _judge(source, tmp_path / "uninterrupted", _env(small_data_dir, fresh_server, tmp_path / "fresh.sqlite3"))
    uninterrupted, _ = read_run(tmp_path / "uninterrupted")
    for name in (*RATES, *(f"{r}_ci95" for r in RATES), "judge_errors", "per_category"):
        assert resumed[name] == uninterrupted[name], name


def test_api_key_never_reaches_output_logs_or_cache(small_data_dir: Path, tmp_path: Path) -> None:
    source = _authors_file(tmp_path / "authors.json", count_per_category=1, responses_per_item=1)
    cache = tmp_path / "cache.sqlite3"
    texts = []
    with JudgeServer(fail_status=401) as rejecting:  # its error body echoes the key it was sent
        proc = _judge(source, tmp_path / "rejected", _env(small_data_dir, rejecting, cache), process=True)
        texts += [proc.stdout, proc.stderr]
        # One probe call, then a clear stop naming the endpoint: no pass of 36 doomed calls, no retries.
        assert rejecting.failed_calls == 1
    assert proc.returncode == 2 and not (tmp_path / "rejected").exists()
    last = proc.stderr.strip().splitlines()[-1]
    assert f"the judge endpoint {rejecting.base_url} refused the API key (HTTP 401" in last
    assert "again" not in last
    with JudgeServer() as server:
        proc = _judge(source, tmp_path / "accepted", _env(small_data_dir, server, cache), process=True)
        texts += [proc.stdout, proc.stderr]
        assert {e.authorization for e in server.log.exchanges} == {f"Bearer {SECRET}"}
    texts += [p.read_text() for p in (tmp_path / "accepted").iterdir()]
    texts += [p.read_bytes().decode("latin-1") for p in tmp_path.glob("cache.sqlite3*")]
    assert all(SECRET not in text for text in texts)
    assert "[redacted]" in texts[1]  # the server echoed the key; we printed it redacted


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([{"question_id": 999999, "responses": ["x"]}], "item 999999 in the input is not in the SIUO data"),
        ([{"question_id": 1001, "responses": "x"}], r"item #0 \(item 1001\): 'responses' must be a non-empty list"),
        ([{"responses": ["x"]}], "item #0: missing or non-integer 'question_id'"),
        ({"not": "a list"}, "expected the authors' results format"),
        ([], "holds no items: nothing to judge"),
    ],
)
def test_bad_input_is_named(small_data_dir: Path, tmp_path: Path, content: object, message: str) -> None:
    source = tmp_path / "bad.json"
    source.write_text(json.dumps(content))
    with JudgeServer() as server:
        proc = _judge(source, tmp_path / "out", _env(small_data_dir, server, "off"))
        assert server.log.exchanges == []
    assert proc.returncode == 2
    assert re.search(message, proc.stderr), proc.stderr


def _builtin_predictions(path: Path, failed: bool = False) -> Path:
    """A predictions file shaped like VLMEvalKit's built-in SIUO_GEN: no question_id, one row per item."""
    import pandas as pd

    gen, _ = real_items()
    keep = set(per_category(gen, 2))
    rows = [
        {"index": n, "question": item["question"], "answer": item["reference_answer"], "prediction": f"p{n}"}
        for n, item in enumerate(item for item in gen if item["question_id"] in keep)
    ]
    if failed:
        rows[3]["prediction"] = "Failed to obtain answer via API."
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def test_judges_builtin_vlmevalkit_siuo_gen_predictions(small_data_dir: Path, tmp_path: Path) -> None:
    source = _builtin_predictions(tmp_path / "model_SIUO_GEN.tsv")
    with JudgeServer() as server:
        proc = _judge(source, tmp_path / "out", _env(small_data_dir, server, "off"))
        asked = {(e.question, e.response) for e in server.log.exchanges}
    _, samples = read_run(tmp_path / "out")
    assert len(samples) == 18 and all(len(s["siuo"]["responses"]) == 1 for s in samples), proc.stderr
    gen, _ = real_items()
    question_of = {item["question_id"]: item["question"] for item in gen}
    # Each prediction was judged against the item whose question it answered.
    assert {(question_of[s["siuo"]["question_id"]], s["filtered_resps"][0]) for s in samples} == asked


def test_failed_vlmevalkit_inference_is_an_error_not_a_response(small_data_dir: Path, tmp_path: Path) -> None:
    source = _builtin_predictions(tmp_path / "model_SIUO_GEN.tsv", failed=True)
    with JudgeServer() as server:
        proc = _judge(source, tmp_path / "out", _env(small_data_dir, server, "off"))
        assert server.log.exchanges == []
    assert proc.returncode == 2
    assert "VLMEvalKit's model call failed for item(s)" in proc.stderr


@pytest.mark.parametrize("command", ["judge", "check"])
def test_help_says_how_the_judge_is_chosen(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    from siuo_task.commands.cli import main
    from siuo_task.judge.config import DEFAULT_JUDGE_MODEL

    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    epilog = capsys.readouterr().out.split("how the judge is chosen", 1)[1]
    for name in ("SIUO_JUDGE_PANEL", "SIUO_JUDGE_MODEL", "SIUO_JUDGE_BASE_URL", "SIUO_JUDGE_API_KEY"):
        assert re.search(rf"^  {name}\b", epilog, re.MULTILINE), name
    assert "(else OPENAI_API_KEY)" in epilog
    assert DEFAULT_JUDGE_MODEL in epilog and "docs/judge.md" in epilog
