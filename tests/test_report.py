"""`siuo-eval report`, `export-review` and `agreement` on results the tests produce for real."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from siuo_task.stats import cohen_kappa, mcnemar_exact_p
from tests.helpers.fixture_data import per_category, real_items
from tests.helpers.judge_server import JudgeServer


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "siuo_task.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def judged_runs(small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two models' responses judged by `siuo-eval judge` against the test judge server."""
    root = tmp_path_factory.mktemp("runs")
    gen, _ = real_items()
    keep = set(per_category(gen, 2))
    outputs = {}
    with JudgeServer() as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SIUO_", "OPENAI_"))}
        env.update(SIUO_DATA_DIR=str(small_data_dir), SIUO_JUDGE_BASE_URL=server.base_url, SIUO_JUDGE_CACHE="off")
        for model in ("alpha", "beta"):
            rows = [
                {**item, "responses": [f"{model} says {n} about {item['question_id']}" for n in range(3)]}
                for item in gen
                if item["question_id"] in keep
            ]
            source = root / f"{model}.json"
            source.write_text(json.dumps(rows))
            _cli("judge", str(source), "--output", str(root / model), env=env)
            outputs[model] = root / model
    return outputs


@pytest.fixture
def env(small_data_dir: Path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SIUO_", "OPENAI_"))}
    environment["SIUO_DATA_DIR"] = str(small_data_dir)
    return environment


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self.external: list[str] = []
        self.items = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if (values.get(name) or "").startswith(("http://", "https://", "//")):
                self.external.append(values[name] or "")
        if tag == "img":
            self.images.append(values.get("src") or "")
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "div" and values.get("class") == "item":
            self.items += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _samples(folder: Path) -> dict[int, dict]:
    lines = (folder / "samples.jsonl").read_text().splitlines()
    return {json.loads(line)["siuo"]["question_id"]: json.loads(line)["siuo"] for line in lines}


def test_report_for_two_models(judged_runs: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = _cli("report", f"alpha={judged_runs['alpha']}", f"beta={judged_runs['beta']}", "--output", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    page = _Page()
    page.feed((out / "report.html").read_text())
    assert page.external == []  # self-contained: opens offline
    assert all(src.startswith("data:image/") for src in page.images)
    assert len([src for src in page.images if src.startswith("data:image/png")]) == 3  # 3 category figures
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "category_effective.png",
        "category_safe.png",
        "category_safe_effective.png",
    ]
    headline, leaderboard = page.tables[0], page.tables[1]
    assert headline[0][:4] == ["Model", "Safe", "Effective", "Safe & Effective"]
    assert [row[0] for row in headline[1:]] == ["alpha", "beta"]
    results = {m: json.loads((judged_runs[m] / "results.json").read_text()) for m in ("alpha", "beta")}
    low, high = results["alpha"]["safe_rate_ci95"]
    assert headline[1][1] == f"{results['alpha']['safe_rate']:.1f} [{low:.1f}, {high:.1f}]"
    assert "Safe (human)" in leaderboard[0] and "MCQ accuracy (auto)" in leaderboard[0]
    assert ["GPT-4V", "53.29"] == leaderboard[1][:2]
    assert leaderboard[-1][-1] == "this report (automatic judge)"
    # One item view per item judged unsafe, each with its image.
    alpha, beta = _samples(judged_runs["alpha"]), _samples(judged_runs["beta"])
    unsafe = sum(1 for r in alpha.values() if r["safe"] is False) + sum(1 for r in beta.values() if r["safe"] is False)
    assert page.items == unsafe > 0
    assert len([src for src in page.images if src.startswith("data:image/jpeg")]) == unsafe
    # The paired test equals an independent computation on the records.
    comparison = next(table for table in page.tables if table[0][0] == "Pair")
    safe_row = next(row for row in comparison[1:] if row[1] == "Safe")
    pairs = [
        (alpha[q]["safe"], beta[q]["safe"])
        for q in alpha
        if alpha[q]["safe"] is not None and beta[q]["safe"] is not None
    ]
    only_a = sum(1 for a, b in pairs if a and not b)
    only_b = sum(1 for a, b in pairs if b and not a)
    assert safe_row[2] == str(len(pairs))
    assert safe_row[4] == f"{only_a} / {only_b}"
    assert safe_row[5] == f"{mcnemar_exact_p(only_a, only_b):.4f}"
    markdown = (out / "report.md").read_text()
    assert "HUMAN evaluation" in markdown and "![Safe by category](figures/category_safe.png)" in markdown


def test_report_on_lmms_eval_output_includes_mcq(small_data_dir: Path, env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "lmms"
    run = [sys.executable, "-m", "lmms_eval", "--model", "dummy", "--model_args", "response=(A)"]
    run += ["--tasks", "siuo_mcq", "--output_path", str(out), "--log_samples"]
    subprocess.run(
        run, env={**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}, capture_output=True, timeout=600
    )
    proc = _cli("report", f"dummy={out}", "--output", str(tmp_path / "report"), env=env)
    assert proc.returncode == 0, proc.stderr
    page = _Page()
    page.feed((tmp_path / "report" / "report.html").read_text())
    headline = page.tables[0]
    gold_a = [m["correct_option"] for m in real_items()[1] if m["question_id"] in set(per_category(real_items()[0], 2))]
    accuracy = 100 * gold_a.count("A") / len(gold_a)
    assert headline[1][4].startswith(f"{accuracy:.1f} [")
    assert (tmp_path / "report" / "figures" / "category_accuracy.png").is_file()


def test_bad_results_path_is_named(env: dict[str, str], tmp_path: Path) -> None:
    proc = _cli("report", str(tmp_path / "nowhere"), "--output", str(tmp_path / "r"), env=env)
    assert proc.returncode == 2 and "nowhere' does not exist" in proc.stderr


def test_export_review_then_agreement(judged_runs: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    review = tmp_path / "review.csv"
    proc = _cli("export-review", str(judged_runs["alpha"]), "--output", str(review), env=env)
    assert proc.returncode == 0, proc.stderr
    with open(review, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 18 * 3
    assert all(row["human_safe"] == "" and row["human_effective"] == "" for row in rows)
    assert all(row["question"] and row["safety_warning"] for row in rows)
    # A reviewer agrees with the judge except on every fourth row, and leaves the last rows blank.
    for index, row in enumerate(rows[:-4]):
        judge = {"true": True, "false": False}.get(row["judge_safe"])
        if judge is not None:
            row["human_safe"] = "yes" if (judge != (index % 4 == 0)) else "no"
        row["human_effective"] = "1" if index % 3 else "0"
    with open(review, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    proc = _cli("agreement", str(review), "--output", str(tmp_path / "agreement.json"), env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "agreement.json").read_text())
    pairs = [
        (row["judge_safe"] == "true", row["human_safe"] == "yes")
        for row in rows
        if row["human_safe"] and row["judge_safe"] in ("true", "false")
    ]
    kappa, low, high = cohen_kappa(pairs)
    safe = result["safe"]["overall"]
    assert safe["n"] == len(pairs)
    assert safe["kappa"] == round(kappa, 4) and safe["kappa_ci95"] == [round(low, 4), round(high, 4)]
    assert safe["accuracy"] == round(100 * sum(a == b for a, b in pairs) / len(pairs), 2)
    assert safe["confusion"]["judge_true_human_false"] == sum(1 for a, b in pairs if a and not b)
    assert safe["skipped_unlabelled"] >= 4
    assert set(result["safe"]["per_category"]) == {row["category"] for row in rows}
    assert "safe: n=" in proc.stdout


def test_agreement_names_an_unreadable_label(judged_runs: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    review = tmp_path / "review.csv"
    _cli("export-review", str(judged_runs["beta"]), "--output", str(review), env=env)
    with open(review, newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[0]["human_safe"] = "maybe"
    with open(review, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerow(rows[0])
    proc = _cli("agreement", str(review), env=env)
    assert proc.returncode == 2
    assert re.search(r"line \d+ human_safe: cannot read 'maybe' as a label", proc.stderr), proc.stderr
