"""Human-calibrated rates (siuo_task.benchmark.calibration, issue 29 items 1 and 3).

End to end: all 167 items, three responses each, judged in this process by a loopback judge that
calls half the unsafe responses safe (too lenient); `export-review`, a reviewer labelling the first
60 items of its order with the truth, then `agreement`: the calibrated interval holds the people's
rate over all 167 items, the judge's own rate does not. By simulation: 1,000 reviews drawn in
export-review's order from a known truth hold the truth in at least 93% of their intervals, and with
a judge that agrees with people on 90% of items the intervals are narrower than the labels alone give.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from siuo_task.benchmark.calibration import CalibrationItem, calibrate, labels_for_width
from siuo_task.commands.review import stratified_order
from tests.helpers.fixture_data import real_items
from tests.helpers.in_process import judge_pointed_at, run_cli
from tests.helpers.judge_server import JudgeServer, choose_reply, other_verdict_reply

RESPONSES = 3
LABELLED_ITEMS = 60


def _write_review(path: Path, rows: list[dict[str, str]]) -> None:
    """A review CSV as export-review writes it, with the labels ``rows`` hold."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def truth(kind: str, response: str) -> bool:
    """What people say of a response: the loopback judge's usual verdict, read as yes / no."""
    verdict = choose_reply(kind, response, declines=False)[1]
    return verdict is True if kind == "safety" else verdict != "ineffective"


def lenient(kind: str, response: str, attempt: int) -> tuple[str, bool | str | None]:
    """The true verdict, except that half of the unsafe responses (by a hash) are called safe."""
    if kind == "safety" and not truth(kind, response) and hashlib.sha256(response.encode()).digest()[0] < 128:
        return other_verdict_reply(kind, response)
    return choose_reply(kind, response, declines=False)


def vote(values: list[bool]) -> bool:
    return sum(values) * 2 > len(values)


@pytest.fixture(scope="module")
def review(full_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A judged run of every item, its export-review CSV with the first 60 items labelled, and
    `agreement`'s output for it."""
    root = tmp_path_factory.mktemp("calibration")
    gen, _ = real_items()
    rows = [{**item, "responses": [f"reply {n} to {item['question_id']}" for n in range(RESPONSES)]} for item in gen]
    (root / "responses.json").write_text(json.dumps(rows))
    with (
        JudgeServer(reply_for=lenient, declines=False) as server,
        judge_pointed_at(server.base_url, root / "cache.sqlite3", SIUO_DATA_DIR=str(full_data_dir)),
    ):
        code, out, err = run_cli(["judge", str(root / "responses.json"), "--output", str(root / "run")])
        assert code == 0, out + err
        code, out, err = run_cli(["export-review", str(root / "run"), "--output", str(root / "review.csv")])
        assert code == 0, out + err
    with open(root / "review.csv", newline="", encoding="utf-8") as handle:
        exported = list(csv.DictReader(handle))
    labelled: list[str] = []
    for row in exported:
        if row["question_id"] not in labelled and len(labelled) == LABELLED_ITEMS:
            break
        labelled += [row["question_id"]] if row["question_id"] not in labelled else []
        row["human_safe"] = str(truth("safety", row["response"])).lower()
        row["human_effective"] = "yes" if truth("effectiveness", row["response"]) else "no"
    _write_review(root / "review.csv", exported)
    code, out, err = run_cli(["agreement", str(root / "review.csv"), "--output", str(root / "agreement.json")])
    assert code == 0, out + err
    people_safe = {item["question_id"]: vote([truth("safety", text) for text in item["responses"]]) for item in rows}
    return {
        "root": root,
        "stdout": out,
        "result": json.loads((root / "agreement.json").read_text()),
        "run": json.loads((root / "run" / "results.json").read_text()),
        "labelled": [int(qid) for qid in labelled],
        "people_safe": people_safe,
    }


def test_lenient_judge_is_corrected_by_60_labelled_items(review: dict[str, Any]) -> None:
    block = review["result"]["calibrated"]["safe_rate"]
    people = review["people_safe"]
    people_rate = 100 * sum(people.values()) / len(people)
    low, high = block["ci95"]
    assert block["labelled_items"] == LABELLED_ITEMS and block["items"] == 167
    assert low <= people_rate <= high, (people_rate, block)
    assert not low <= block["judge_only"] <= high, block
    assert block["judge_only"] > high, "the judge is too lenient: its rate lies above the interval"
    # The judge-only figure is the run's own headline; human_only is the plain rate on the labelled items.
    assert block["judge_only"] == round(review["run"]["safe_rate"], 2)
    on_labelled = [people[qid] for qid in review["labelled"]]
    assert block["human_only"] == round(100 * sum(on_labelled) / len(on_labelled), 2)
    assert "calibrated safe_rate: " in review["stdout"] and "from 60 labelled of 167 items" in review["stdout"]
    assert review["result"]["labelled_from_top"] is True


def test_labelled_items_spread_over_every_category_and_per_category_needs_ten(review: dict[str, Any]) -> None:
    block = review["result"]["calibrated"]["safe_rate"]
    per_category = block["per_category"]
    assert len(per_category) == 9
    assert sum(part["labelled_items"] for part in per_category.values()) == LABELLED_ITEMS
    assert sum(part["items"] for part in per_category.values()) == 167
    assert {part["labelled_items"] for part in per_category.values()} <= {6, 7}
    assert all(part["estimate"] is None and "fewer than 10" in part["note"] for part in per_category.values())


def test_labels_for_a_chosen_width(review: dict[str, Any]) -> None:
    for rate in ("safe_rate", "effective_rate", "safe_effective_rate"):
        block = review["result"]["calibrated"][rate]
        width = block["for_width"]
        assert width["width"] == 10.0
        assert width["labelled_items_needed"] == LABELLED_ITEMS + width["more_items"]
        low, high = block["ci95"]
        if high - low > 10:
            assert 0 < width["more_items"] <= 167 - LABELLED_ITEMS
        assert low <= block["estimate"] <= high


def test_an_unlabelled_category_gives_no_estimate(review: dict[str, Any], tmp_path: Path) -> None:
    """Only a few rows labelled (not every category reached): no calibrated number, and why."""
    with open(review["root"] / "review.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows[3 * 5 :]:
        row["human_safe"] = row["human_effective"] = ""
    _write_review(tmp_path / "few.csv", rows)
    code, out, err = run_cli(["agreement", str(tmp_path / "few.csv"), "--output", str(tmp_path / "a.json")])
    assert code == 0, out + err
    block = json.loads((tmp_path / "a.json").read_text())["calibrated"]["safe_rate"]
    assert block["estimate"] is None and block["ci95"] is None and block["labelled_items"] == 5
    assert "fewer than 2 labelled items" in block["note"] and "label the review from the top" in block["note"]
    assert "calibrated safe_rate: none (" in out


def test_labels_not_from_the_top_are_warned_about(review: dict[str, Any], tmp_path: Path) -> None:
    with open(review["root"] / "review.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    rows[1]["human_safe"] = rows[1]["human_effective"] = ""
    _write_review(tmp_path / "gap.csv", rows)
    code, out, err = run_cli(["agreement", str(tmp_path / "gap.csv"), "--output", str(tmp_path / "a.json")])
    assert code == 0, out + err
    assert "row 2 is blank and row 180 labelled" in err and "label from the top" in err
    result = json.loads((tmp_path / "a.json").read_text())
    assert result["labelled_from_top"] is False
    assert result["calibrated"]["safe_rate"]["labelled_items"] == LABELLED_ITEMS - 1


def test_a_bad_target_width_is_named(review: dict[str, Any]) -> None:
    code, _, err = run_cli(["agreement", str(review["root"] / "review.csv"), "--target-width", "0"])
    assert code == 2 and "--target-width must be in (0, 100]" in err


# -- the estimator from data -------------------------------------------------------------------


def test_every_item_labelled_gives_the_people_rate_exactly() -> None:
    rng = random.Random(1)
    items = [CalibrationItem(f"c{i % 3}", rng.random() < 0.7, rng.random() < 0.4) for i in range(50)]
    result = calibrate(items)
    people = sum(bool(item.human) for item in items) / len(items)
    assert result.estimate == pytest.approx(people)
    assert result.high - result.low == pytest.approx(0.0)
    assert labels_for_width(items, 0.01) == 50


def test_a_one_item_category_labelled_in_full_is_enough() -> None:
    """A partial run's category of one item, labelled, is known exactly: the estimate needs no second label there."""
    lone = CalibrationItem("lone", True, False)
    labelled = [CalibrationItem("b", i % 3 > 0, i % 2 > 0) for i in range(5)]
    unlabelled = [CalibrationItem("b", i % 3 > 0, None) for i in range(7)]
    result = calibrate([lone, *labelled, *unlabelled])
    assert result.labelled == 6 and result.items == 13
    assert result.low <= result.estimate <= result.high


def test_undecided_judge_items_stay_in_the_population() -> None:
    """An item the judge could not decide counts among the N items with its category's judge rate."""
    items = [CalibrationItem("a", None, None)] + [CalibrationItem("a", i % 2 == 0, i % 2 == 0) for i in range(10)]
    result = calibrate(items)
    assert result.items == 11 and result.labelled == 10
    assert result.judge_only == 0.5 and result.estimate == pytest.approx(0.5)


# -- by simulation -----------------------------------------------------------------------------

CATEGORY_SIZES = {"a": 16, "b": 21, "c": 18, "d": 19, "e": 20, "f": 17, "g": 18, "h": 19, "i": 19}  # 167 items
DRAWS = 1000


def _draw_review(rng: random.Random, judge_for: Any, labels: int) -> tuple[list[CalibrationItem], float]:
    """One synthetic run: per-category human rates, a judge from ``judge_for``, and the first
    ``labels`` items of export-review's order (a fresh seed) labelled."""
    rows = []
    for category, size in CATEGORY_SIZES.items():
        rate = rng.uniform(0.2, 0.8)
        for _ in range(size):
            human = rng.random() < rate
            rows.append(
                {"question_id": len(rows), "category": category, "human": human, "judge": judge_for(rng, human)}
            )
    ordered = stratified_order(rows, seed=rng.randrange(2**31))
    chosen = {row["question_id"] for row in ordered[:labels]}
    items = [
        CalibrationItem(row["category"], row["judge"], row["human"] if row["question_id"] in chosen else None)
        for row in rows
    ]
    return items, sum(row["human"] for row in rows) / len(rows)


def _simulate(judge_for: Any, labels: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    covered = human_covered = narrower = 0
    width = human_width = 0.0
    for _ in range(DRAWS):
        items, people = _draw_review(rng, judge_for, labels)
        result = calibrate(items)
        covered += result.low - 1e-9 <= people <= result.high + 1e-9
        human_covered += result.human_only_low - 1e-9 <= people <= result.human_only_high + 1e-9
        narrower += (result.high - result.low) < (result.human_only_high - result.human_only_low)
        width += result.high - result.low
        human_width += result.human_only_high - result.human_only_low
    return {
        "coverage": covered / DRAWS,
        "human_coverage": human_covered / DRAWS,
        "narrower": narrower / DRAWS,
        "width": width / DRAWS,
        "human_width": human_width / DRAWS,
    }


def too_lenient(rng: random.Random, human: bool) -> bool:
    """Calls 40% of unsafe items safe and 5% of safe ones unsafe."""
    return True if not human and rng.random() < 0.4 else (human and rng.random() >= 0.05)


def agrees_90(rng: random.Random, human: bool) -> bool:
    """Agrees with people on 90% of items, its errors either way."""
    return human if rng.random() >= 0.1 else not human


def test_intervals_cover_the_truth_with_a_biased_judge() -> None:
    figures = _simulate(too_lenient, LABELLED_ITEMS, seed=29)
    assert figures["coverage"] >= 0.93, figures


def test_a_judge_agreeing_on_90_percent_narrows_the_interval() -> None:
    figures = _simulate(agrees_90, LABELLED_ITEMS, seed=30)
    assert figures["coverage"] >= 0.93, figures
    assert figures["width"] < 0.8 * figures["human_width"], figures
    assert figures["narrower"] >= 0.95, figures


# -- in the report -----------------------------------------------------------------------------


def _markdown_rows(report: Path, section: str) -> list[list[str]]:
    """The table rows of one section of report.md."""
    text = report.read_text(encoding="utf-8").split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]


def test_report_shows_calibrated_rates_beside_the_judge(review: dict[str, Any], full_data_dir: Path) -> None:
    root = review["root"]
    out = root / "report-given"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIUO_DATA_DIR", str(full_data_dir))
        code, stdout, stderr = run_cli(
            ["report", f"GPT-4o={root / 'run'}", "--review", str(root / "review.csv"), "--output", str(out)]
        )
    assert code == 0, stdout + stderr
    assert f"read review of GPT-4o: {root / 'review.csv'}" in stdout
    rows = _markdown_rows(out / "report.md", "Human-calibrated rates")
    block = review["result"]["calibrated"]["safe_rate"]
    low, high = block["ci95"]
    safe = next(row for row in rows if row[1] == "Safe")
    assert safe[2] == f"{block['judge_only']:.1f}"
    assert safe[3] == f"{block['estimate']:.1f} [{low:.1f}, {high:.1f}]"
    assert safe[5] == "60 of 167" and safe[6] == "50.90 (GPT-4o)"
    assert {row[1] for row in rows[2:]} == {"Safe", "Effective", "Safe & Effective"}
    assert (out / "figures" / "calibrated.png").read_bytes().startswith(b"\x89PNG")
    assert "figures/calibrated.png" in (out / "report.md").read_text(encoding="utf-8")


def test_report_finds_a_review_beside_the_run_and_refuses_one_of_another_model(
    review: dict[str, Any], full_data_dir: Path, tmp_path: Path
) -> None:
    root = review["root"]
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    shutil.copy(root / "review.csv", run / "review.csv")
    code, stdout, stderr = run_cli(
        ["report", str(run), "--data-dir", str(full_data_dir), "--output", str(tmp_path / "beside")]
    )
    assert code == 0, stdout + stderr
    assert f"read review of responses: {run / 'review.csv'}" in stdout
    assert "## Human-calibrated rates" in (tmp_path / "beside" / "report.md").read_text(encoding="utf-8")
    code, stdout, stderr = run_cli(
        [
            "report",
            f"A={root / 'run'}",
            f"B={root / 'run'}",
            "--review",
            str(root / "review.csv"),
            "--output",
            str(tmp_path / "other"),
        ]
    )
    assert code == 2
    assert f"--review '{root / 'review.csv'}' is a review of 'responses', which is none of the runs reported" in stderr
