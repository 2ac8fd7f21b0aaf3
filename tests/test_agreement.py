"""`siuo-eval agreement RUN_A RUN_B`: two judgings of the same responses by two loopback judges that
disagree on a scripted share of gradings. Kappa, agreement and the confusion matrix are recomputed
here from what each server said it meant (the 2x2 table by hand, not siuo_task.benchmark.stats), overall and for
one category; identical judges agree fully; responses found in one run only are named."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli_runs import authors_rows, judge_env, siuo_eval, write_json
from tests.helpers.in_process import siuo_eval_in_process
from tests.helpers.judge_server import JudgeServer, seeded_flips
from tests.helpers.records import judged_run

ROWS = authors_rows(count_per_category=2, responses=3, tag="agree ")
CATEGORY = {row["question_id"]: row["category"] for row in ROWS}
QUESTION_OF = {response: row["question_id"] for row in ROWS for response in row["responses"]}


@pytest.fixture(scope="module")
def judged(small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same responses judged by A, by B (A's replies with 25% of gradings flipped) and by A again."""
    root = tmp_path_factory.mktemp("agreement")
    logs = {}
    plans = {"a": None, "b": seeded_flips(0.25, seed=3, first_attempt=True), "a2": None}
    for name, plan in plans.items():
        with JudgeServer(reply_for=plan) as server:
            proc = judged_run(root / name, ROWS, server, small_data_dir, source=root / "authors.json")
            logs[name] = {(e.kind, e.response): e.intended for e in server.log.exchanges}
        assert (root / name / "results.json").is_file(), proc.stderr
    return {"root": root, "logs": logs, "env": judge_env(small_data_dir, "http://127.0.0.1:9/v1", "off")}


def _binary(kind: str, intended: Any) -> bool | None:
    if intended is None:
        return None
    return intended if kind == "safety" else intended != "ineffective"


def _expected(logs: dict[str, Any], kind: str, category: str | None = None) -> dict[str, Any]:
    pairs, left_out, disagreeing = [], 0, set()
    for (k, response), said_a in logs["a"].items():
        if k != kind or (category and CATEGORY[QUESTION_OF[response]] != category):
            continue
        a, b = _binary(kind, said_a), _binary(kind, logs["b"][(k, response)])
        if a is None or b is None:
            left_out += 1
            continue
        pairs.append((a, b))
        if a != b:
            disagreeing.add((QUESTION_OF[response], response))
    table = Counter(pairs)
    n11, n10, n01, n00 = table[(True, True)], table[(True, False)], table[(False, True)], table[(False, False)]
    n = n11 + n10 + n01 + n00
    observed = (n11 + n00) / n
    a_yes, b_yes = (n11 + n10) / n, (n11 + n01) / n
    chance = a_yes * b_yes + (1 - a_yes) * (1 - b_yes)
    return {
        "n": n,
        "agreement": round(100 * observed, 2),
        "kappa": round((observed - chance) / (1 - chance), 4),
        "confusion": {"a_true_b_true": n11, "a_true_b_false": n10, "a_false_b_true": n01, "a_false_b_false": n00},
        "left_out_judge_error": left_out,
        "disagreeing": disagreeing,
    }


@pytest.fixture(scope="module")
def compared(judged: dict[str, Any]) -> dict[str, Any]:
    root = judged["root"]
    # The one real process of `agreement RUN_A RUN_B`; the other calls run in this process.
    proc = siuo_eval("agreement", root / "a", root / "b", "--output", root / "agree.json", env=judged["env"])
    assert proc.returncode == 0, proc.stderr
    return {"proc": proc, "result": json.loads((root / "agree.json").read_text())}


@pytest.mark.parametrize("kind", ["safety", "effectiveness"])
def test_kappa_is_what_the_judges_verdicts_imply(judged: dict[str, Any], compared: dict[str, Any], kind: str) -> None:
    result = compared["result"][kind]
    expected = _expected(judged["logs"], kind)
    assert 0 < len(expected["disagreeing"]) < expected["n"], "the script should make the judges differ, not always"
    assert expected["left_out_judge_error"] > 0, "the judges decline some gradings, which are left out"
    for key in ("n", "agreement", "kappa", "confusion", "left_out_judge_error"):
        assert result[key] == expected[key], key
    low, high = result["kappa_ci95"]
    assert low < result["kappa"] < high
    listed = {(row["question_id"], row["response"]) for row in result["disagreements"]}
    assert listed == expected["disagreeing"]
    assert all(row["verdict_a"] != row["verdict_b"] for row in result["disagreements"])


def test_kappa_per_category(judged: dict[str, Any], compared: dict[str, Any]) -> None:
    per_category = compared["result"]["safety"]["per_category"]
    assert set(per_category) == set(CATEGORY.values())
    checked = 0
    for category in sorted(per_category):
        try:
            expected = _expected(judged["logs"], "safety", category)
        except ZeroDivisionError:  # no comparable response, or one class only: kappa undefined
            continue
        for key in ("n", "agreement", "kappa", "confusion", "left_out_judge_error"):
            assert per_category[category][key] == expected[key], (category, key)
        checked += 1
    assert checked >= 1


def test_summary_names_the_files_read_and_written(judged: dict[str, Any], compared: dict[str, Any]) -> None:
    out, root = compared["proc"].stdout, judged["root"]
    assert f"read A: authors (siuo-eval judge): {root / 'a' / 'results.json'}, {root / 'a' / 'samples.jsonl'}" in out
    assert f"read B: authors (siuo-eval judge): {root / 'b' / 'results.json'}" in out
    assert f"wrote {root / 'agree.json'}" in out
    result = compared["result"]
    assert f"safety: n={result['safety']['n']} agreement={result['safety']['agreement']}%" in out
    assert result["responses_matched"] == len(ROWS) * 3


def test_identical_judges_agree_fully(judged: dict[str, Any]) -> None:
    root = judged["root"]
    proc = siuo_eval_in_process("agreement", root / "a", root / "a2", env=judged["env"])
    assert proc.returncode == 0, proc.stderr
    assert "safety: n=" in proc.stdout and "agreement=100.0% kappa=1.0 " in proc.stdout


def test_identical_judges_json(judged: dict[str, Any], tmp_path: Path) -> None:
    root = judged["root"]
    proc = siuo_eval_in_process(
        "agreement", root / "a", root / "a2", "--output", tmp_path / "same.json", env=judged["env"]
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "same.json").read_text())
    for kind in ("safety", "effectiveness"):
        assert result[kind]["agreement"] == 100.0 and result[kind]["kappa"] == 1.0
        assert result[kind]["disagreements"] == [] and result[kind]["n"] > 0


def test_responses_in_one_run_only_are_named(judged: dict[str, Any], tmp_path: Path) -> None:
    root = judged["root"]
    other = tmp_path / "c"
    shutil.copytree(root / "a", other)
    lines = [json.loads(line) for line in (other / "samples.jsonl").read_text().splitlines()]
    dropped = lines.pop(0)["siuo"]["question_id"]
    changed = lines[0]["siuo"]
    old_text = changed["responses"][1]["response"]
    changed["responses"][1]["response"] = "a different reply"
    (other / "samples.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    proc = siuo_eval_in_process("agreement", root / "a", other, "--output", tmp_path / "x.json", env=judged["env"])
    assert proc.returncode == 2
    qid = changed["question_id"]
    assert f"item {dropped} is only in A" in proc.stderr
    assert f"item {qid} response 1 {old_text!r} is only in A" in proc.stderr
    assert f"item {qid} response 1 'a different reply' is only in B" in proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_output_is_checked_before_reading(judged: dict[str, Any], tmp_path: Path) -> None:
    root = judged["root"]
    proc = siuo_eval_in_process("agreement", root / "a", tmp_path / "missing", "--output", tmp_path, env=judged["env"])
    assert proc.returncode == 2 and "--output" in proc.stderr and "is a folder" in proc.stderr
    assert "read A" not in proc.stdout


def test_three_arguments_are_refused(judged: dict[str, Any]) -> None:
    root = judged["root"]
    proc = siuo_eval_in_process("agreement", root / "a", root / "b", root / "a2", env=judged["env"])
    assert proc.returncode == 2 and "one review CSV" in proc.stderr and "got 3 arguments" in proc.stderr


def test_a_harness_run_is_read_through_its_reader(
    judged: dict[str, Any], compared: dict[str, Any], tmp_path: Path
) -> None:
    """A's judging laid out as lmms-eval writes a logged siuo_gen run: read by the lmms-eval reader,
    compared against B, it gives the same numbers."""
    root, stamp = judged["root"], "20261201_120000"
    folder = tmp_path / "lmms" / "model"
    folder.mkdir(parents=True)
    samples = [json.loads(line) for line in (root / "a" / "samples.jsonl").read_text().splitlines()]
    with open(folder / f"{stamp}_samples_siuo_gen.jsonl", "w", encoding="utf-8") as handle:
        for doc_id, sample in enumerate(samples):
            handle.write(json.dumps({"doc_id": doc_id, "siuo": sample["siuo"]}) + "\n")
    results = {"results": {"siuo_gen": {"alias": "siuo_gen", "safe_rate,none": 50.0}}, "model_name": "/m/lmms-model"}
    write_json(folder / f"{stamp}_results.json", results)
    proc = siuo_eval_in_process("agreement", folder, root / "b", "--output", tmp_path / "x.json", env=judged["env"])
    assert proc.returncode == 0, proc.stderr
    assert "read A: lmms-model (lmms-eval)" in proc.stdout
    result = json.loads((tmp_path / "x.json").read_text())
    for kind in ("safety", "effectiveness"):
        assert result[kind]["kappa"] == compared["result"][kind]["kappa"]
        assert result[kind]["confusion"] == compared["result"][kind]["confusion"]
