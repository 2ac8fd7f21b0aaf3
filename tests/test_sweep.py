"""`siuo-eval judge` over a sweep: runs from lmms-eval, VLMEvalKit and the authors' format judged in one
command under one bound; exact coalescing counts; the dry-run bill; bad inputs named, nothing lost."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from siuo_task.benchmark.results import GEN_REDUCERS, reduce_values
from siuo_task.vlmeval import GEN_PAPER
from tests.helpers.cli_runs import authors_rows, clean_env, judge_env, read_run, write_json
from tests.helpers.in_process import siuo_eval_in_process
from tests.helpers.judge_server import JudgeServer

STAMP = "20261128_120000"
LMMS_MODEL_PATH = "/models/llava-onevision-qwen2-0.5b-ov-hf"


def _lmms_eval_run(folder: Path, rows: list[dict[str, Any]]) -> Path:
    """An lmms-eval output folder for siuo_gen, in lmms-eval's file names and line layout."""
    folder.mkdir(parents=True)
    with open(folder / f"{STAMP}_samples_siuo_gen.jsonl", "w", encoding="utf-8") as handle:
        for doc_id, row in enumerate(rows):
            record = {"question_id": row["question_id"], "category": row["category"],
                      "responses": [{"response": text} for text in row["responses"]]}  # fmt: skip
            line = {"doc_id": doc_id, "doc": {k: v for k, v in row.items() if k != "responses"},
                    "target": row["reference_answer"], "arguments": [], "resps": [row["responses"]],
                    "filtered_resps": [row["responses"]], "siuo": record}  # fmt: skip
            handle.write(json.dumps(line) + "\n")
    results = {
        "results": {"siuo_gen": {"alias": "siuo_gen"}},
        "config": {"model": "llava_onevision", "model_args": f"pretrained={LMMS_MODEL_PATH},device_map=cpu"},
        "model_name": LMMS_MODEL_PATH,
    }
    write_json(folder / f"{STAMP}_results.json", results)
    return folder


def _vlmeval_run(work: Path, model: str, rows: list[dict[str, Any]]) -> Path:
    """A VLMEvalKit work folder with predictions of our 3-response dataset, plus its companions."""
    folder = work / model / "T20261128_G1234567"
    folder.mkdir(parents=True)
    predictions = [
        {
            "index": row["question_id"] * 10 + n,
            "question_id": row["question_id"],
            "repeat": n,
            "question": row["question"],
            "prediction": text,
        }
        for row in rows
        for n, text in enumerate(row["responses"])
    ]
    pd.DataFrame(predictions).to_excel(folder / f"{model}_{GEN_PAPER}.xlsx", index=False)
    pd.DataFrame([{"Safe (overall)": 1.0}]).to_csv(folder / f"{model}_{GEN_PAPER}_score.csv", index=False)
    return work


def test_three_harnesses_in_one_sweep_under_one_bound(small_data_dir: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "sweep"
    _lmms_eval_run(inputs / "lmms" / "llava", authors_rows(tag="lmms "))
    _vlmeval_run(inputs / "vlmeval", "Qwen2-VL-2B-Instruct", authors_rows(tag="vlm "))
    write_json(inputs / "authors" / "gpt4o_results.json", authors_rows(tag="authors "))
    output = tmp_path / "judged"
    with JudgeServer(latency_s=0.03, declines=False) as server:
        env = judge_env(small_data_dir, server.base_url, "off", SIUO_JUDGE_CONCURRENCY="4")
        proc = siuo_eval_in_process("judge", inputs, "--output", output, env=env)
        peak, calls = server.peak_in_flight, sum(server.attempts.values())
    assert proc.returncode == 0, proc.stderr
    assert peak <= 4, f"the server saw {peak} requests in flight with a bound of 4"
    assert calls == 3 * 2 * 18 * 3
    names = {"llava-onevision-qwen2-0.5b-ov-hf", "Qwen2-VL-2B-Instruct", "gpt4o_results"}
    assert {p.name for p in output.iterdir() if p.is_dir()} == names
    assert proc.stderr.count("Judging:") >= 1 and "named by lmms-eval model_args" in proc.stderr
    for name in names:
        results, samples = read_run(output / name)
        assert results["n_items"] == 18 and results["judge_errors"] == 0
        recomputed = reduce_values(samples, GEN_REDUCERS)
        assert all(results[m] == recomputed[m] for m in ("safe_rate", "effective_rate", "safe_effective_rate"))
    board = json.loads((output / "leaderboard.json").read_text())
    assert {row["run"] for row in board["runs"]} == names and board["failed_inputs"] == []
    with open(output / "leaderboard.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and {"safe_rate_ci95_low", "judge_errors", "judge_cost_usd"} <= set(rows[0])
    # No judge error, but 18 of the benchmark's 167 items: not complete.
    assert [(row["n_items"], row["judge_errors"], row["complete"]) for row in rows] == [("18", "0", "False")] * 3
    report = siuo_eval_in_process("report", output, "--output", tmp_path / "report", env=env)
    assert report.returncode == 0, report.stderr
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert all(name in markdown for name in names)


def test_coalescing_counts_and_dry_run_bill(small_data_dir: Path, tmp_path: Path) -> None:
    """A refusing model (3 identical responses per item) twice over: 216 requests, 36 distinct calls."""
    rows = authors_rows(tag="same ")
    for row in rows:
        row["responses"] = [f"I cannot help with {row['question_id']}."] * 3
    first = write_json(tmp_path / "in" / "refuser.json", rows)
    second = write_json(tmp_path / "in" / "refuser_again.json", rows)
    cache = tmp_path / "cache.sqlite3"
    with JudgeServer(declines=False) as server:
        env = judge_env(small_data_dir, server.base_url, cache, SIUO_JUDGE_MODEL="gpt-4o-mini-2024-07-18")
        dry = siuo_eval_in_process("judge", first, second, "--output", tmp_path / "out", "--dry-run", env=env)
        # The bill at OpenAI's prices is for OpenAI's endpoint (a dry run makes no call there).
        openai = {**env, "SIUO_JUDGE_BASE_URL": "https://api.openai.com/v1"}
        priced = siuo_eval_in_process("judge", first, second, "--output", tmp_path / "out", "--dry-run", env=openai)
        assert sum(server.attempts.values()) == 0 and not (tmp_path / "out").exists()
        off = judge_env(small_data_dir, server.base_url, "off")
        judged = siuo_eval_in_process(
            "judge", first, second, "--output", tmp_path / "out", env=off
        )  # coalescing with the cache off
        assert sum(server.attempts.values()) == 36, judged.stderr
        siuo_eval_in_process("judge", first, "--output", tmp_path / "warm", env=env)
        dry_warm = siuo_eval_in_process("judge", first, second, "--output", tmp_path / "out", "--dry-run", env=env)
    table = _dry_rows(dry.stdout)
    assert table["refuser"][:4] == [108, 72, 0, 36] and table["refuser_again"][:4] == [108, 108, 0, 0]
    assert table["TOTAL"][6] is None  # a model of that name on a local server has no known price
    tokens_in, tokens_out, cost = _dry_rows(priced.stdout)["TOTAL"][4:7]
    assert tokens_in > 36 * 8500 and tokens_out == 36 * 150  # gpt-4o-mini counts 8,500 tokens for a one-tile image
    assert cost == round((tokens_in * 0.15 + tokens_out * 0.60) / 1e6, 4)
    assert _dry_rows(dry_warm.stdout)["TOTAL"][:4] == [216, 180, 36, 0]
    usages = [read_run(tmp_path / "out" / name)[0]["usage"] for name in ("refuser", "refuser_again")]
    assert sum(u["calls"] for u in usages) == 36 and sum(u["coalesced"] for u in usages) == 180
    assert all(u["calls"] + u["coalesced"] + u["cache_hits"] == 108 for u in usages)
    assert (
        read_run(tmp_path / "out" / "refuser")[0]["safe_rate"]
        == read_run(tmp_path / "out" / "refuser_again")[0]["safe_rate"]
    )


def _dry_rows(stdout: str) -> dict[str, list[float]]:
    rows = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 8 and re.fullmatch(r"\d+", parts[1]):
            rows[parts[0]] = [float(p) if p != "n/a" else None for p in parts[1:]]
    return rows


def test_bad_inputs_are_named_and_the_rest_is_judged(small_data_dir: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    write_json(mixed / "good.json", authors_rows(count_per_category=1))
    write_json(mixed / "config.json", {"learning_rate": 0.1})
    lines = [
        json.dumps({"doc_id": 0, "siuo": {"question_id": 1001, "responses": [{"response": "x"}]}}),
        '{"doc_id": 1, "si',
    ]
    (mixed / f"{STAMP}_samples_siuo_gen.jsonl").write_text("\n".join(lines))
    other = pd.DataFrame([{"index": 0, "question": "Which colour is the sky?", "prediction": "A"}])
    other.to_excel(mixed / "llava_MMBench_DEV_EN.xlsx", index=False)
    other.to_excel(tmp_path / "llava_SIUO_GEN.xlsx", index=False)  # named as SIUO, holds another dataset
    output = tmp_path / "out"
    with JudgeServer(declines=False) as server:
        env = judge_env(small_data_dir, server.base_url, tmp_path / "cache.sqlite3")
        first = siuo_eval_in_process(
            "judge", tmp_path / "missing", mixed, tmp_path / "llava_SIUO_GEN.xlsx", "--output", output, env=env
        )
        board = json.loads((output / "leaderboard.json").read_text())
        server.attempts.clear()
        again = siuo_eval_in_process("judge", mixed, "--output", output, env=env)
        assert sum(server.attempts.values()) == 0  # everything judged before came from the cache
    assert first.returncode == again.returncode == 2, again.stderr  # the truncated file is still there
    lines = first.stderr.splitlines()
    for culprit, reason in [
        (tmp_path / "missing", "does not exist"),
        (mixed / "config.json", "not a SIUO input"),
        (mixed / f"{STAMP}_samples_siuo_gen.jsonl", "line 2 is not JSON"),
        (mixed / "llava_MMBench_DEV_EN.xlsx", "not VLMEvalKit predictions of a SIUO generation dataset"),
        (tmp_path / "llava_SIUO_GEN.xlsx", "is not a SIUO item"),
    ]:
        assert sum(1 for line in lines if str(culprit) in line and reason in line) >= 1, (culprit, first.stderr)
    assert [row["run"] for row in board["runs"]] == ["good"]
    assert len(board["failed_inputs"]) == 3
    results, _ = read_run(output / "good")
    assert results["usage"]["cache_hits"] == 2 * 9 * 3  # the second run read what the first judged
    kept = sorted(p.name for p in (output / "good").iterdir() if p.name.endswith(".bak"))
    assert len(kept) == 2 and "kept the earlier" in again.stderr
    assert len(list(output.glob("leaderboard.json.*.bak"))) == 1


def test_run_names_are_recorded_safe_unique_and_overridable(tmp_path: Path) -> None:
    import os

    from siuo_task.runs import find_responses

    rows = authors_rows(count_per_category=1)
    older = _vlmeval_run(tmp_path / "a", "Model With Spaces", rows)  # a rerun leaves two T<time> folders
    newer_folder = older / "Model With Spaces" / "T20261129_G7654321"
    newer_folder.mkdir(parents=True)
    predictions = next(older.rglob(f"*_{GEN_PAPER}.xlsx"))
    newest = newer_folder / predictions.name
    newest.write_bytes(predictions.read_bytes())
    os.utime(predictions, (1, 1))
    write_json(tmp_path / "b" / "x.json", rows)
    write_json(tmp_path / "c" / "x.json", rows)
    finding = find_responses(
        [str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c"), f"my run={tmp_path / 'b' / 'x.json'}"],
        tmp_path / "out",
    )
    runs, problems = finding.runs, finding.notes
    assert [(run.name, run.path) for run in runs] == [
        ("Model_With_Spaces", newest),
        ("x", tmp_path / "b" / "x.json"),
        ("x-2", tmp_path / "c" / "x.json"),
        ("my_run", tmp_path / "b" / "x.json"),
    ]
    assert [p.path for p in problems if "older run" in p.reason] == [predictions]


def test_dry_run_and_export_need_no_key(small_data_dir: Path, tmp_path: Path) -> None:
    source = write_json(tmp_path / "authors.json", authors_rows(count_per_category=1, responses=1))
    env = clean_env(small_data_dir, SIUO_JUDGE_CACHE="off")
    dry = siuo_eval_in_process("judge", source, "--output", tmp_path / "out", "--dry-run", env=env)
    exported = siuo_eval_in_process(
        "judge", source, "--output", tmp_path / "out", "--export-batch", tmp_path / "r.jsonl", env=env
    )
    judged = siuo_eval_in_process("judge", source, "--output", tmp_path / "out", env=env)
    assert dry.returncode == exported.returncode == 0, dry.stderr + exported.stderr
    assert "TOTAL" in dry.stdout and len((tmp_path / "r.jsonl").read_text().splitlines()) == 18
    assert judged.returncode == 2 and "no judge API key" in judged.stderr


def test_vlmevalkit_builtin_predictions_of_the_167_real_items(full_data_dir: Path, tmp_path: Path) -> None:
    # VLMEvalKit's own SIUO_GEN predictions carry the question text (no item id); 5 of the 167
    # published questions end in a space that such files do not keep.
    from tests.helpers.fixture_data import real_items

    gen, _ = real_items()
    assert sum(1 for item in gen if item["question"] != item["question"].strip()) == 5
    folder = tmp_path / "outputs" / "Qwen2-VL-7B" / "T20261201_G0000001"
    folder.mkdir(parents=True)
    rows = [
        {"index": n, "question": item["question"].strip(), "category": item["category"], "prediction": f"reply {n}"}
        for n, item in enumerate(gen)
    ]
    pd.DataFrame(rows).to_excel(folder / "Qwen2-VL-7B_SIUO_GEN.xlsx", index=False)
    with JudgeServer(declines=False) as server:
        env = judge_env(full_data_dir, server.base_url, "off", SIUO_JUDGE_CONCURRENCY="16")
        proc = siuo_eval_in_process("judge", tmp_path / "outputs", "--output", tmp_path / "judged", env=env)
        calls = len(server.log.exchanges)
    assert proc.returncode == 0, proc.stderr
    results, samples = read_run(tmp_path / "judged" / "Qwen2-VL-7B-SIUO_GEN")
    assert results["n_items"] == 167 and len(samples) == 167 and calls == 2 * 167
    assert {sample["question_id"] for sample in samples} == {item["question_id"] for item in gen}
    assert results["run"]["model"] == "Qwen2-VL-7B" and results["run"]["task"] == "siuo_gen_greedy"


def test_complete_means_every_item_of_the_benchmark_judged() -> None:
    """The leaderboard's ``complete``: all of the eval card's items, and no judge error."""
    from siuo_task.benchmark.card import BENCHMARK_ITEMS
    from siuo_task.benchmark.summary import JudgeResults
    from siuo_task.commands.judge_pipeline import leaderboard_rows

    def _typed(runs: dict[str, dict]) -> dict[str, JudgeResults]:
        return {name: JudgeResults.from_dict(results) for name, results in runs.items()}

    runs = {
        "all": {"n_items": BENCHMARK_ITEMS, "judge_errors": 0},
        "two items": {"n_items": 2, "judge_errors": 0},
        "one item short": {"n_items": BENCHMARK_ITEMS - 1, "judge_errors": 0},
        "a judge error": {"n_items": BENCHMARK_ITEMS, "judge_errors": 1},
        "an error in pass 2": {"n_items": BENCHMARK_ITEMS, "judge_errors": 0, "judge_errors_passes": [0, 2]},
    }
    complete = {row["run"]: row["complete"] for row in leaderboard_rows(_typed(runs))}
    assert BENCHMARK_ITEMS == 167
    assert complete == {
        "all": True,
        "two items": False,
        "one item short": False,
        "a judge error": False,
        "an error in pass 2": False,
    }
