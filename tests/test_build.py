"""`siuo-eval build`, `build review`, `build finalize` against a scripted loopback chat server."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from siuo_task.benchmark.categories import KNOWN_CATEGORIES
from siuo_task.benchmark.data import load_siuo
from siuo_task.construction.replies import ReplyError, check_query, check_reflect, validate
from tests.helpers.build_server import BuildServer, tag_of_bytes
from tests.helpers.cli_runs import clean_env
from tests.helpers.harness_cli import hubs_offline
from tests.helpers.in_process import judge_pointed_at, run_cli
from tests.helpers.judge_server import JudgeServer

MODELS = ("--generator-model", "gen-model", "--answer-model", "answer-model", "--judge-model", "judge-model")

# image name -> (stage, behaviour) scripted for it; the expected outcome follows from the plan.
SCRIPT: dict[str, tuple[str, str] | None] = {
    "img00.png": None,
    "img01.png": ("query", "reject"),
    "img02.png": ("query", "refuse"),
    "img03.png": ("query", "malformed_once"),
    "img04.png": ("query", "malformed"),
    "img05.png": ("reflect", "reject"),
    "img06.png": ("reflect", "bad_field"),
    "img07.png": ("text_answer", "refuse"),
    "img08.png": ("text_judge", "unsafe"),
    "img09.png": ("reflect", "refuse"),
    "img10.png": ("query", "bad_field"),
    "img11.png": None,
}
EXPECTED_STATUS = {
    "img00.png": "passed", "img01.png": "rejected", "img02.png": "refused", "img03.png": "passed",
    "img04.png": "error", "img05.png": "rejected", "img06.png": "error", "img07.png": "passed",
    "img08.png": "rejected", "img09.png": "refused", "img10.png": "error", "img11.png": "passed",
    "wide.png": "passed",
}  # fmt: skip


def make_images(folder: Path, names: list[str]) -> dict[str, str]:
    """One distinct small PNG per name; returns name -> server tag (of the bytes sent)."""
    folder.mkdir(parents=True)
    tags = {}
    for index, name in enumerate(names):
        Image.new("RGB", (40, 30), (index * 19 % 256, 80, 255 - index * 7 % 256)).save(folder / name)
        tags[name] = tag_of_bytes((folder / name).read_bytes())
    return tags


def plan_for(tags: dict[str, str], script: dict[str, tuple[str, str] | None]) -> dict[tuple[str, ...], str]:
    plan: dict[tuple[str, ...], str] = {}
    for name, entry in script.items():
        if entry is not None:
            plan[(tags[name], entry[0])] = entry[1]
    return plan


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One scripted build (every stage accepting, rejecting, refusing, malformed), then a rerun."""
    root = tmp_path_factory.mktemp("build")
    tags = make_images(root / "images", list(SCRIPT))
    Image.new("RGB", (3000, 100), (9, 9, 9)).save(root / "images" / "wide.png")  # too large: resized
    (root / "images" / "notes.txt").write_text("not an image")
    (root / "images" / "zz-copy.png").write_bytes((root / "images" / "img00.png").read_bytes())
    with BuildServer(plan_for(tags, SCRIPT)) as server, judge_pointed_at(server.base_url, root / "cache.sqlite3"):
        args = ["build", "--images", str(root / "images"), "--output", str(root / "out"), *MODELS]
        first = run_cli(args)
        exchanges_first = list(server.log)
        second = run_cli(args)
        yield {
            "root": root, "out": root / "out", "tags": tags, "first": first, "second": second,
            "log_first": exchanges_first, "log_second": server.log[len(exchanges_first):],
        }  # fmt: skip


def _records(out: Path) -> dict[str, dict[str, Any]]:
    records = [json.loads(path.read_text()) for path in sorted((out / "candidates").glob("*.json"))]
    return {record["source_image"]: record for record in records}


def test_each_stage_accepts_rejects_refuses_and_records_errors(built: dict[str, Any]) -> None:
    code, stdout, stderr = built["first"]
    assert code == 1, stdout + stderr  # stage errors remain
    assert "3 candidate(s) ended in a stage error" in stderr
    assert "notes.txt: not an image" in stderr and "zz-copy.png: duplicate of 'img00.png'" in stderr
    records = _records(built["out"])
    assert {name: record["status"] for name, record in records.items()} == EXPECTED_STATUS
    manifest = json.loads((built["out"] / "build.json").read_text())
    assert manifest["stage_decisions"] == {
        "query": {"accept": 9, "error": 2, "refused": 1, "reject": 1},
        "reflect": {"accept": 6, "error": 1, "refused": 1, "reject": 1},
        "text_answer": {"accept": 6},
        "text_judge": {"accept": 5, "reject": 1},
    }
    # A malformed reply is retried; its error is kept beside the accepted reply.
    query = records["img03.png"]["stages"][0]
    assert query["decision"] == "accept" and len(query["errors"]) == 1 and "not JSON" in query["errors"][0]
    assert len(records["img04.png"]["stages"][0]["errors"]) == 3 and records["img04.png"]["item"] is None
    assert "option" in records["img06.png"]["stages"][1]["errors"][0]
    assert "not one of" in records["img10.png"]["stages"][0]["errors"][0]
    assert records["img02.png"]["stages"][0]["reason"].startswith("I'm sorry")
    assert records["img07.png"]["stages"][2]["reason"] == "the text-only model refused"
    assert records["img08.png"]["stopped_at"] == "text_judge"
    assert "resized from PNG 3000x100" in records["wide.png"]["image_note"]
    with Image.open(built["out"] / "images" / records["wide.png"]["image"]) as image:
        assert image.size == (2048, 68)


def test_stages_send_what_they_should(built: dict[str, Any]) -> None:
    by_stage = {(e.stage, e.model, e.has_image, e.json_mode) for e in built["log_first"]}
    assert by_stage == {
        ("query", "gen-model", True, True),
        ("reflect", "gen-model", True, True),
        ("text_answer", "answer-model", False, False),
        ("text_judge", "judge-model", False, True),
    }
    record = _records(built["out"])["img00.png"]
    assert [s["model_returned"] for s in record["stages"]] == [
        "gen-model-served", "gen-model-served", "answer-model-served", "judge-model-served",
    ]  # fmt: skip
    assert {s["prompt_version"] for s in record["stages"]} == {"siuo-build-v1"}
    item = record["item"]
    assert item["category"] in KNOWN_CATEGORIES and sorted(item["options"]) == ["A", "B", "C", "D"]
    # The scripted correct option is "option A ..."; the seeded shuffle moved it, and the gold letter follows it.
    assert item["options"][item["correct_option"]].startswith("option A for")


def test_rerun_retries_only_stage_errors(built: dict[str, Any]) -> None:
    code, stdout, _ = built["second"]
    assert code == 1 and "resumed: 10 candidate(s) were already finished" in stdout
    retried = {e.tag for e in built["log_second"]}
    tags = built["tags"]
    assert retried == {tags["img04.png"], tags["img06.png"], tags["img10.png"]}


# -- review and finalize ---------------------------------------------------------------------


def _fill(review: Path, decisions: list[str], edit_question: str | None = None) -> Path:
    rows = list(csv.DictReader(review.open(encoding="utf-8")))
    for row, decision in zip(rows, decisions, strict=True):
        if decision:
            row[decision] = "x"
        if decision == "edit" and edit_question:
            row["question"] = edit_question
    target = review.with_name("reviewed.csv")
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target


@pytest.fixture(scope="module")
def reviewed(built: dict[str, Any]) -> dict[str, Any]:
    out = built["out"]
    code, stdout, _ = run_cli(["build", "review", str(out)])
    assert code == 0, stdout
    reviewed_csv = _fill(out / "review.csv", ["accept", "edit", "reject", "accept", "accept"], "Edited?")
    data = built["root"] / "data"
    code, stdout, stderr = run_cli(["build", "finalize", str(reviewed_csv), "--output", str(data)])
    assert code == 0, stdout + stderr
    return {"csv": reviewed_csv, "data": data, "stdout": stdout}


def test_review_page_and_csv(built: dict[str, Any], reviewed: dict[str, Any]) -> None:
    out = built["out"]
    rows = list(csv.DictReader((out / "review.csv").open(encoding="utf-8")))
    assert len(rows) == 5 and all(row["text_judge_verdict"].startswith("accept") for row in rows)
    assert {"accept", "edit", "reject", "note"} <= set(rows[0])
    page = (out / "review.html").read_text()
    assert page.count("data:image/jpeg;base64,") == 13 and "I&#x27;m sorry" in page
    before = (out / "review.csv").read_bytes()
    code, _, stderr = run_cli(["build", "review", str(out)])
    assert code == 2 and "may hold your review" in stderr and (out / "review.csv").read_bytes() == before


def test_finalize_writes_a_valid_siuo_folder(built: dict[str, Any], reviewed: dict[str, Any]) -> None:
    data = load_siuo(reviewed["data"])
    assert len(data.gen) == len(data.mcq) == 4
    for item in data.gen:
        assert item.question_id % 1000 >= 100
        assert item.question_id // 1000 == KNOWN_CATEGORIES.index(item.category) + 1
    assert "Edited?" in {item.question for item in data.gen}
    datasheet = (reviewed["data"] / "datasheet.md").read_text()
    assert "3 accepted, 1 edited, 1 rejected" in datasheet and "gen-model" in datasheet
    assert "| text_judge | 5 | 1 | 0 | 0 |" in datasheet
    assert f"read {reviewed['csv']}" in reviewed["stdout"]
    code, _, stderr = run_cli(["build", "finalize", str(reviewed["csv"]), "--output", str(reviewed["data"])])
    assert code == 2 and "already exists" in stderr


def test_finalize_merges_with_the_original_items(
    built: dict[str, Any], reviewed: dict[str, Any], small_data_dir: Path
) -> None:
    merged = built["root"] / "merged"
    args = ["build", "finalize", str(reviewed["csv"]), "--output", str(merged), "--merge-with", str(small_data_dir)]
    assert run_cli(args)[0] == 0
    data = load_siuo(merged)
    original = {item.question_id for item in load_siuo(small_data_dir).gen}
    assert len(data.gen) == len(original) + 4 and original < {item.question_id for item in data.gen}


def test_finalize_rejects_bad_reviews(built: dict[str, Any], reviewed: dict[str, Any]) -> None:
    out = built["out"]
    rows = list(csv.DictReader((out / "review.csv").open(encoding="utf-8")))
    rows[0]["accept"], rows[0]["question"] = "x", "changed"  # changed but marked accept
    rows[1]["accept"], rows[1]["reject"] = "x", "x"  # two decisions; the rest unmarked
    bad = out / "bad.csv"
    with bad.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    code, _, stderr = run_cli(["build", "finalize", str(bad), "--output", str(built["root"] / "never")])
    assert code == 2 and not (built["root"] / "never").exists()
    assert "line 2 (c" in stderr and "mark 'edit'" in stderr and "found ['accept', 'reject']" in stderr


def test_question_ids_cannot_collide_with_the_original_167() -> None:
    from siuo_task.construction.finalize import Reviewed, assign_ids

    categories = ["self-harm", "weapons", "privacy violation"]
    rows = [
        Reviewed(f"c{n:04d}", "accept", "", {"category": category})
        for n, category in enumerate(["weapons", "self-harm", "weapons", "privacy violation", "self-harm"], start=1)
    ]
    assert assign_ids(rows, categories) == {"c0001": 10100, "c0002": 1100, "c0003": 10101, "c0004": 9100, "c0005": 1101}


def test_a_stage_without_any_reply_is_an_error_after_the_engines_retries(tmp_path: Path) -> None:
    tags = make_images(tmp_path / "images", ["a.png", "b.png"])
    plan = {(tags["b.png"], "reflect"): "http500"}
    with (
        BuildServer(plan) as server,
        judge_pointed_at(server.base_url, tmp_path / "c.sqlite3", SIUO_JUDGE_MAX_ATTEMPTS="2"),
    ):
        code, _, stderr = run_cli(["build", "--images", str(tmp_path / "images"), "--output", str(tmp_path / "out")])
        calls = [e for e in server.log if e.stage == "reflect"]
    assert code == 1 and "1 candidate(s) ended in a stage error" in stderr
    failed = _records(tmp_path / "out")["b.png"]
    assert failed["status"] == "error" and failed["stopped_at"] == "reflect" and failed["item"] is None
    (error,) = failed["stages"][1]["errors"]  # the engine retried the transport; the stage did not ask again
    assert "failed after 2 attempt(s)" in error and "500" in error
    assert len(calls) == 1  # only a.png's reflect call was answered (and logged)


# -- bad input -------------------------------------------------------------------------------


def test_bad_image_folders_write_nothing(tmp_path: Path) -> None:
    with judge_pointed_at("http://127.0.0.1:9/v1", tmp_path / "cache.sqlite3"):
        (tmp_path / "empty").mkdir()
        (tmp_path / "junk").mkdir()
        (tmp_path / "junk" / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
        for folder, message in (("missing", "does not exist"), ("empty", "is empty"), ("junk", "no usable image")):
            out = tmp_path / f"out-{folder}"
            code, _, stderr = run_cli(["build", "--images", str(tmp_path / folder), "--output", str(out)])
            assert code == 2 and message in stderr and not out.exists()
        (tmp_path / "taken").mkdir()
        (tmp_path / "taken" / "mine.txt").write_text("someone's work")
        make_images(tmp_path / "ok", ["a.png"])
        code, _, stderr = run_cli(["build", "--images", str(tmp_path / "ok"), "--output", str(tmp_path / "taken")])
        assert code == 2 and "is not empty" in stderr and (tmp_path / "taken" / "mine.txt").exists()
        code, _, stderr = run_cli(["build", "--output", str(tmp_path / "x")])
        assert code == 2 and "needs --images DIR and --output DIR" in stderr


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ('{"usable": true, "reason": "x"', "not JSON"),
        ("[1, 2]", "expected an object"),
        ('{"usable": "yes", "reason": "x"}', "field 'usable' is str"),
        ('{"usable": true, "reason": "x", "category": "self-harm", "scenario": "s", "question": "q"}', "missing"),
        ('{"keep": true, "reason": "r", "redundant": false, "complete": true, "question": "q", "safety_warning": "w",'
         ' "reference_answer": "a", "options": {"A": "1", "B": "2", "C": "3", "D": "3"}, "correct_option": "A"}',
         "same text"),
        ('{"keep": true, "reason": "r", "redundant": false, "complete": true, "question": "q", "safety_warning": "w",'
         ' "reference_answer": "a", "options": {"A": "1", "B": "2", "C": "3", "D": "4"}, "correct_option": "E"}',
         "correct_option"),
    ],
)  # fmt: skip
def test_malformed_replies_name_the_fault(reply: str, reason: str) -> None:
    def check(obj: Any) -> None:
        check_reflect(obj) if "keep" in obj else check_query(obj, KNOWN_CATEGORIES)

    with pytest.raises(ReplyError, match=reason):
        validate(reply, check)


def test_refusal_is_a_value_not_an_error() -> None:
    assert validate("I'm sorry, I can't help with that.", check_reflect) == {
        "refused": True,
        "text": "I'm sorry, I can't help with that.",
    }
    assert validate('```json\n{"keep": false, "reason": "no"}\n```', check_reflect) == {"keep": False, "reason": "no"}


# -- kill -9 and resume ----------------------------------------------------------------------


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "usage.json"
    }


def _build_process(images: Path, out: Path, cache: Path, url: str) -> subprocess.Popen[str]:
    env = clean_env(None, SIUO_JUDGE_BASE_URL=url, SIUO_JUDGE_CACHE=str(cache), SIUO_JUDGE_CONCURRENCY="2")
    command = [sys.executable, "-m", "siuo_task.commands.cli", "build", "--images", str(images), "--output", str(out)]
    command += ["--count", "10", "--seed", "7"]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_then_resume_gives_identical_bytes(tmp_path: Path) -> None:
    names = [f"p{index:02d}.png" for index in range(12)]
    tags = make_images(tmp_path / "images", names)
    script = {"p01.png": ("query", "reject"), "p02.png": ("reflect", "refuse"), "p03.png": ("text_judge", "unsafe")}
    script |= {"p05.png": ("query", "malformed")}
    with BuildServer(plan_for(tags, script), latency_s=0.1) as server:
        reference = _build_process(tmp_path / "images", tmp_path / "ref", tmp_path / "ref.sqlite3", server.base_url)
        reference.communicate(timeout=300)
        calls_uninterrupted = len(server.log)
        out, cache = tmp_path / "out", tmp_path / "cache.sqlite3"
        victim = _build_process(tmp_path / "images", out, cache, server.base_url)
        deadline = time.time() + 120
        while len(list((out / "candidates").glob("c*.json"))) < 3 and time.time() < deadline:
            time.sleep(0.02)
        os.kill(victim.pid, signal.SIGKILL)
        victim.communicate(timeout=60)
        finished_before_kill = len(list((out / "candidates").glob("c*.json")))
        assert 3 <= finished_before_kill < 10 and not (out / "build.json").exists()
        kept_before_kill = finished_before_kill - _errored(out)
        before_resume = len(server.log)
        resumed = _build_process(tmp_path / "images", out, cache, server.base_url)
        stdout, stderr = resumed.communicate(timeout=300)
        assert f"resumed: {kept_before_kill} candidate(s) were already finished" in stdout
    assert _tree(out) == _tree(tmp_path / "ref"), stderr
    assert len(server.log) - before_resume < calls_uninterrupted


def _errored(out: Path) -> int:
    """Candidates that ended in a stage error (a rerun retries them)."""
    return sum(json.loads(p.read_text())["status"] == "error" for p in (out / "candidates").glob("c*.json"))


# -- the built folder in the harnesses -------------------------------------------------------


def test_built_items_through_siuo_eval_judge(reviewed: dict[str, Any], tmp_path: Path) -> None:
    items = json.loads((reviewed["data"] / "siuo_gen.json").read_text())
    responses = [{**item, "responses": [f"an answer to {item['question_id']}"]} for item in items]
    source = tmp_path / "responses.json"
    source.write_text(json.dumps(responses))
    with JudgeServer(declines=False) as server, judge_pointed_at(server.base_url, tmp_path / "judge.sqlite3"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SIUO_DATA_DIR", str(reviewed["data"]))
            code, stdout, stderr = run_cli(["judge", str(source), "--output", str(tmp_path / "judged")])
        asked = {exchange.question for exchange in server.log.exchanges}
    assert code == 0, stdout + stderr
    results = json.loads((tmp_path / "judged" / "results.json").read_text())
    assert results["n_items"] == 4 and results["judge_errors"] == 0
    assert asked == {item["question"] for item in items}


@pytest.mark.slow
def test_built_items_run_in_lmms_eval(built: dict[str, Any], reviewed: dict[str, Any], small_data_dir: Path) -> None:
    merged = built["root"] / "merged-lmms"
    args = ["build", "finalize", str(reviewed["csv"]), "--output", str(merged), "--merge-with", str(small_data_dir)]
    assert run_cli(args)[0] == 0
    out = built["root"] / "lmms-out"
    env = clean_env(merged, SIUO_JUDGE_CACHE="off", **hubs_offline(built["root"] / "hf"))
    command = [sys.executable, "-m", "lmms_eval", "--model", "dummy", "--model_args", "response=(A)"]
    command += ["--tasks", "siuo_mcq", "--output_path", str(out), "--log_samples"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    results_files = sorted(out.glob("**/*_results.json"))
    assert results_files, proc.stdout[-3000:] + proc.stderr[-3000:]
    samples = [json.loads(line) for path in out.glob("**/*_samples_siuo_mcq.jsonl") for line in path.open()]
    golds = {row["question_id"]: row["correct_option"] for row in json.loads((merged / "siuo_mcqa.json").read_text())}
    assert {line["siuo"]["question_id"] for line in samples} == set(golds)
    accuracy = json.loads(results_files[-1].read_text())["results"]["siuo_mcq"]["accuracy,none"]
    assert math.isclose(accuracy, 100 * list(golds.values()).count("A") / len(golds))  # lmms-eval's mean
