"""Batch judging through the real openai client: the OpenAI Batch API (files + batches) on a loopback
server, resuming after a kill, retrying failed lines; export/import in vllm run-batch's format."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers.batch_server import BatchServer, run_batch_file
from tests.helpers.cli_runs import SECRET, authors_rows, judge_env, read_run, siuo_eval_command, verdicts, write_json
from tests.helpers.in_process import siuo_eval_in_process
from tests.helpers.judge_server import JudgeServer

COMPARED = ("safe_rate", "effective_rate", "safe_effective_rate", "safe_rate_ci95", "judge_errors", "per_category")


def _same_results(first: Path, second: Path) -> None:
    a, a_samples = read_run(first)
    b, b_samples = read_run(second)
    for name in COMPARED:
        assert a[name] == b[name], name
    assert verdicts(a_samples) == verdicts(b_samples)
    assert a["usage"]["prompt_tokens"] == b["usage"]["prompt_tokens"]


def test_online_batch_and_export_import_agree(small_data_dir: Path, tmp_path: Path) -> None:
    source = write_json(tmp_path / "authors.json", authors_rows())
    distinct = 2 * 18 * 3
    with BatchServer(fail_first="reply 1 to 1") as server:
        online = siuo_eval_in_process(
            "judge", source, "--output", tmp_path / "online", env=judge_env(small_data_dir, server.base_url, "off")
        )
        assert sum(server.attempts.values()) == distinct, online.stderr
        server.attempts.clear()
        env = judge_env(small_data_dir, server.base_url, tmp_path / "batch.sqlite3")
        batch = siuo_eval_in_process("judge", source, "--output", tmp_path / "batch", "--batch", "openai", env=env)
        # One online probe call; everything else through batches; the lines that failed went into a second batch.
        assert sum(server.attempts.values()) == 1, batch.stderr
        assert server.state.created == 2 and len(server.state.failed_once) > 0, batch.stderr
        assert len(server.state.lines_seen) == distinct - 1 + len(server.state.failed_once)
        assert "submitting them again" in batch.stderr
        server.attempts.clear()
        env = judge_env(small_data_dir, server.base_url, "off")
        exported = siuo_eval_in_process(
            "judge", source, "--output", tmp_path / "x", "--export-batch", tmp_path / "req.jsonl", env=env
        )
        assert exported.returncode == 0 and not (tmp_path / "x").exists(), exported.stderr
        lines = [json.loads(line) for line in (tmp_path / "req.jsonl").read_text().splitlines()]
        assert len(lines) == distinct and len({line["custom_id"] for line in lines}) == distinct
        assert {(line["method"], line["url"]) for line in lines} == {("POST", "/v1/chat/completions")}
        assert run_batch_file(tmp_path / "req.jsonl", tmp_path / "judged.jsonl") == distinct
        imported = siuo_eval_in_process(
            "judge", source, "--output", tmp_path / "imported", "--import-batch", tmp_path / "judged.jsonl", env=env
        )
        assert sum(server.attempts.values()) == 0, imported.stderr  # offline: no chat call at all
    assert online.returncode == batch.returncode == imported.returncode == 1  # the server declines a few
    _same_results(tmp_path / "online", tmp_path / "batch")
    _same_results(tmp_path / "online", tmp_path / "imported")
    assert read_run(tmp_path / "batch")[0]["usage"]["batch"] == "openai"
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".csv")]
    texts = [p.read_text() for p in written] + [proc.stdout + proc.stderr for proc in (online, batch, imported)]
    assert all(SECRET not in text for text in texts)


def test_a_batch_interrupted_after_submission_is_resumed_not_resubmitted(small_data_dir: Path, tmp_path: Path) -> None:
    source = write_json(tmp_path / "authors.json", authors_rows(count_per_category=1))
    output = tmp_path / "out"
    with BatchServer(hold=True) as server:
        env = judge_env(small_data_dir, server.base_url, tmp_path / "cache.sqlite3")
        command = siuo_eval_command("judge", source, "--output", output, "--batch", "openai")
        victim = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        state_file = output / ".siuo-batch" / "openai-batch.json"
        deadline = time.monotonic() + 60
        while not state_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert server.state.created == 1 and state_file.exists()
        batch_id = json.loads(state_file.read_text())["batch_id"]
        server.release()
        server.attempts.clear()
        resumed = siuo_eval_in_process("judge", source, "--output", output, "--batch", "openai", env=env)
        resumed_online = sum(server.attempts.values())
        assert server.state.created == 1, resumed.stderr  # no second batch was paid for
    assert f"resuming OpenAI batch {batch_id}" in resumed.stderr
    results, _ = read_run(output)
    assert results["n_items"] == 9 and not state_file.exists()
    # Every request answered once: by the one batch, by a probe call, or by the cache.
    usage = results["usage"]
    assert usage["calls"] == len(server.state.lines_seen) + resumed_online
    assert usage["calls"] + usage["cache_hits"] == 2 * 9 * 3


def test_batch_against_a_server_without_a_batch_api_says_what_to_do(small_data_dir: Path, tmp_path: Path) -> None:
    from tests.helpers.judge_server import JudgeServer

    source = write_json(tmp_path / "authors.json", authors_rows(count_per_category=1, responses=1))
    with JudgeServer() as server:
        env = judge_env(small_data_dir, server.base_url, "off")
        proc = siuo_eval_in_process("judge", source, "--output", tmp_path / "out", "--batch", "openai", env=env)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "has no OpenAI Batch API" in last and "--export-batch" in last


def test_every_cost_of_a_batch_run_is_at_the_batch_price(small_data_dir: Path, tmp_path: Path) -> None:
    """results.json states one cost, at the price the calls were paid: with --batch openai the
    top-level judge_cost_usd, the usage block and each pass's cost are all half the online
    price. The loopback judge's calls have no price, so its real records are priced here as
    calls to OpenAI's endpoint (the one priced host) and summarised as the pipeline does."""
    import copy

    from siuo_task.benchmark.results import USAGE_REDUCERS
    from siuo_task.commands.judge_pipeline import LoadedRun, Pricing, run_summary
    from siuo_task.judge.config import JudgeConfig
    from siuo_task.runs import find_responses

    source = write_json(tmp_path / "authors.json", authors_rows(count_per_category=1))
    with JudgeServer(declines=False) as server:
        judged = siuo_eval_in_process(
            "judge", source, "--output", tmp_path / "out", env=judge_env(small_data_dir, server.base_url, "off")
        )
    assert judged.returncode == 0, judged.stderr
    config = JudgeConfig.from_env({"SIUO_JUDGE_API_KEY": SECRET})  # OpenAI's endpoint and default judge
    _, values = read_run(tmp_path / "out")
    for value in values:
        for name in USAGE_REDUCERS:
            value[name].update(endpoint=config.endpoint, models=[config.model])
    run = LoadedRun(find_responses([str(source)]).runs[0], pairs=[])
    for count in (1, 2):  # one pass; two passes (the same replies twice)
        summaries = {}
        for batch in (None, "openai"):
            passes = copy.deepcopy([values, values])
            summary = run_summary(
                run, passes[0], config, Pricing(config.model, config.endpoint, batch), passes[1:count]
            ).to_dict()  # results.json as written
            summaries[batch] = summary
            assert summary["judge_cost_usd"] == summary["usage"]["cost_usd"] > 0, batch
        online, halved = summaries[None], summaries["openai"]
        assert halved["judge_cost_usd"] == round(online["judge_cost_usd"] / 2, 6)
        assert [p["cost_usd"] for p in halved.get("usage_passes", [])] == [
            round(p["cost_usd"] / 2, 6) for p in online.get("usage_passes", [])
        ]
        assert len(halved.get("usage_passes", [])) == (count if count > 1 else 0)
