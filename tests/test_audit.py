"""`siuo-eval audit`: pass rates per check, model and category, exact on a scripted server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from siuo_task.benchmark.data import load_siuo
from siuo_task.benchmark.metrics import rate
from tests.helpers.build_server import BuildServer, tag_of_bytes, tag_of_question
from tests.helpers.in_process import judge_pointed_at, run_cli

JUDGES = ("audit-a", "audit-b")


def _plan(data_dir: Path) -> tuple[dict[tuple[str, ...], str], list[Any]]:
    items = load_siuo(data_dir).gen
    text = [tag_of_question(item.question) for item in items]
    image = [tag_of_bytes(item.image_path.read_bytes()) for item in items]
    plan = {
        (text[0], "text_judge", "audit-a"): "unsafe",
        (text[1], "text_judge", "audit-a"): "unsafe",
        (image[2], "image_judge", "audit-b"): "unsafe",
        (image[3], "image_judge", "audit-a"): "refuse",  # no verdict
        (text[4], "text_judge", "audit-b"): "malformed_once",  # retried, then a verdict
        (image[5], "image_judge"): "unsafe",  # both models
    }
    return plan, list(items)


def _expected(plan: dict[tuple[str, ...], str], items: list[Any], model: str) -> dict[str, list[bool | None]]:
    """Each item's check results as the plan means them, recomputed without siuo_task's audit code."""

    def outcome(tag: str, check: str) -> bool | None:
        behaviour = plan.get((tag, check, model)) or plan.get((tag, check))
        return {"unsafe": False, "refuse": None}.get(behaviour or "", True)

    text = [outcome(tag_of_question(i.question), "text_judge") for i in items]
    image = [outcome(tag_of_bytes(i.image_path.read_bytes()), "image_judge") for i in items]
    both = [None if None in (t, m) else bool(t and m) for t, m in zip(text, image, strict=True)]
    return {"text": text, "image": image, "both": both}


def test_audit_pass_rates_are_exact(small_data_dir: Path, tmp_path: Path) -> None:
    plan, items = _plan(small_data_dir)
    with BuildServer(plan) as server, judge_pointed_at(server.base_url, tmp_path / "cache.sqlite3"):
        args = ["audit", "--data-dir", str(small_data_dir), "--output", str(tmp_path / "audit")]
        code, stdout, stderr = run_cli([*args, "--models", *JUDGES, "--answer-model", "answerer"])
        log = list(server.log)
    assert code == 1, stdout + stderr  # one check got no verdict
    summary = json.loads((tmp_path / "audit" / "audit.json").read_text())
    for model in JUDGES:
        expected = _expected(plan, items, model)
        for check, decisions in expected.items():
            assert summary["per_model"][model][check]["percent"] == rate(decisions).percent, (model, check)
        category = items[0].category
        in_category = [index for index, item in enumerate(items) if item.category == category]
        got = summary["per_model"][model]["per_category"][category]["text"]["percent"]
        assert got == rate([expected["text"][index] for index in in_category]).percent
    assert summary["per_model"]["audit-a"]["text"]["percent"] == round(100 * 16 / 18, 4)
    assert summary["per_model"]["audit-a"]["judge_errors"] == 1
    failing = {(f["question_id"], f["model"], f["check"], f["result"]) for f in summary["failing"]}
    assert failing == {
        (items[0].question_id, "audit-a", "text", "unsafe"),
        (items[1].question_id, "audit-a", "text", "unsafe"),
        (items[2].question_id, "audit-b", "image", "unsafe"),
        (items[3].question_id, "audit-a", "image", "no verdict"),
        (items[5].question_id, "audit-a", "image", "unsafe"),
        (items[5].question_id, "audit-b", "image", "unsafe"),
    }
    # One text-only answer per item (no image), judged by each model; each image judged by each model.
    answers = [e for e in log if e.stage == "text_answer"]
    assert len(answers) == 18 and {(e.model, e.has_image) for e in answers} == {("answerer", False)}
    assert {(e.stage, e.has_image, e.json_mode) for e in log if e.stage != "text_answer"} == {
        ("text_judge", False, True),
        ("image_judge", True, True),
    }
    report = (tmp_path / "audit" / "audit.md").read_text()
    assert "94.76" in report and "95.96" in report and "| audit-a | 88.9 [" in report
    assert "<table" in (tmp_path / "audit" / "audit.html").read_text()
    code, _, stderr = run_cli([*args, "--models", *JUDGES])
    assert code == 2 and "already exist" in stderr
