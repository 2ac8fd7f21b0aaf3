"""`siuo-eval report`, `export-review` and `agreement` on results the tests produce for real."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from siuo_task.benchmark.stats import cohen_kappa, mcnemar_exact_p
from tests.helpers.cli_runs import clean_env, siuo_eval
from tests.helpers.fixture_data import per_category, real_items
from tests.helpers.harness_cli import hubs_offline
from tests.helpers.in_process import run_cli, siuo_eval_in_process
from tests.helpers.judge_server import SERVED_MODEL, JudgeServer, choose_reply
from tests.helpers.records import judged_run


def _response_with(model: str, qid: int, safe: bool) -> str:
    """A response the test judge server rates ``safe`` (and gives an effectiveness verdict)."""
    for attempt in range(1000):
        text = f"{model} answer {attempt} to item {qid}"
        if choose_reply("safety", text)[1] is safe and choose_reply("effectiveness", text)[1] is not None:
            return text
    raise AssertionError("no response found")


@pytest.fixture(scope="module")
def judged_runs(small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Several models' responses judged by `siuo-eval judge` (in this process) against the test judge server:
    alpha and beta (3 responses per item), gamma (one item with 2 responses), careful (every
    response safe) and reckless (every response unsafe)."""
    root = tmp_path_factory.mktemp("runs")
    gen, _ = real_items()
    keep = [item for item in gen if item["question_id"] in set(per_category(gen, 2))]
    responses = {
        model: {
            item["question_id"]: [f"{model} says {n} about {item['question_id']}" for n in range(3)] for item in keep
        }
        for model in ("alpha", "beta", "gamma")
    }
    responses["gamma"][keep[4]["question_id"]].pop()
    responses["careful"] = {
        item["question_id"]: [_response_with("careful", item["question_id"], True)] for item in keep
    }
    responses["reckless"] = {
        item["question_id"]: [_response_with("reckless", item["question_id"], False)] for item in keep
    }
    outputs = {}
    with JudgeServer() as server:
        for model, by_item in responses.items():
            rows = [{**item, "responses": by_item[item["question_id"]]} for item in keep]
            proc = judged_run(root / model, rows, server, small_data_dir)
            (root / f"{model}.stdout").write_text(proc.stdout)
            outputs[model] = root / model
    return outputs


@pytest.fixture
def env(small_data_dir: Path) -> dict[str, str]:
    return clean_env(small_data_dir)


class _Page(HTMLParser):
    """Tables (by section title), paragraphs, headings, images and item views of a report page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.section_tables: dict[str, list[list[str]]] = {}
        self.section_text: dict[str, str] = {}
        self.headings: list[str] = []
        self.images: list[str] = []
        self.alts: list[str] = []
        self.external: list[str] = []
        self.summaries: list[str] = []
        self.items = 0
        self.boxed: list[bool] = []  # per table: inside its own div.table-box
        self.style = ""
        self._last_start: tuple[str, str | None] = ("", None)
        self._cell: list[str] | None = None
        self._text: list[str] | None = None
        self._tag = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if (values.get(name) or "").startswith(("http://", "https://", "//")):
                self.external.append(values[name] or "")
        if tag == "img":
            self.images.append(values.get("src") or "")
            self.alts.append(values.get("alt") or "")
        elif tag == "table":
            self.tables.append([])
            self.boxed.append(self._last_start == ("div", "table-box"))
            if self.headings:
                self.section_tables[self.headings[-1]] = self.tables[-1]
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag in ("h2", "p", "summary"):
            self._text, self._tag = [], tag
        elif tag == "div" and values.get("class") == "item":
            self.items += 1
        self._last_start = (tag, values.get("class"))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None
        elif tag == self._tag and self._text is not None:
            text = "".join(self._text)
            if tag == "h2":
                self.headings.append(text)
            elif tag == "summary":
                self.summaries.append(text)
            elif self.headings and self.headings[-1] not in self.section_text:
                self.section_text[self.headings[-1]] = text
            self._text, self._tag = None, ""

    def handle_data(self, data: str) -> None:
        if self._last_start[0] == "style":
            self.style += data
        if self._cell is not None:
            self._cell.append(data)
        if self._text is not None:
            self._text.append(data)


def _page(folder: Path) -> _Page:
    page = _Page()
    page.feed((folder / "report.html").read_text())
    return page


def _samples(folder: Path) -> dict[int, dict]:
    lines = (folder / "samples.jsonl").read_text().splitlines()
    return {json.loads(line)["siuo"]["question_id"]: json.loads(line)["siuo"] for line in lines}


def test_report_for_two_models(judged_runs: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = siuo_eval(
        "report", f"alpha={judged_runs['alpha']}", f"beta={judged_runs['beta']}", "--output", str(out), env=env
    )
    assert proc.returncode == 0, proc.stderr
    page = _page(out)
    assert page.external == []  # self-contained: opens offline
    # No table runs off the page (its first table did at 1400 px, with long paths): a cell with
    # nowhere to break breaks anywhere, and each table scrolls sideways in its own box.
    assert page.tables and all(page.boxed), page.boxed
    assert ".table-box{max-width:100%;overflow-x:auto}" in page.style and "td{overflow-wrap:anywhere}" in page.style
    assert all(src.startswith("data:image/") for src in page.images)
    assert len([src for src in page.images if src.startswith("data:image/png")]) == 4  # scatter + 3 categories
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "category_effective.png",
        "category_safe.png",
        "category_safe_effective.png",
        "safe_vs_effective.png",
    ]
    headline = page.section_tables["Headline results"]
    assert headline[0] == [
        "Model", "Items", "Responses/item", "Safe", "Effective", "Safe & Effective", "MCQ accuracy", "MCQ unparsed"
    ]  # fmt: skip
    assert [row[2] for row in headline[1:]] == ["3", "3"]
    assert [row[0] for row in headline[1:]] == [f"{m} (PARTIAL: 18 of 167 items)" for m in ("alpha", "beta")]
    assert [row[1] for row in headline[1:]] == ["18", "18"]
    results = {m: json.loads((judged_runs[m] / "results.json").read_text()) for m in ("alpha", "beta")}
    low, high = results["alpha"]["safe_rate_ci95"]
    assert headline[1][3] == f"{results['alpha']['safe_rate']:.1f} [{low:.1f}, {high:.1f}]"
    # Judge and protocol details have their own table, not the headline's.
    judge = page.section_tables["Judge and protocol"]
    assert (
        judge[1][1:3] == ["18", SERVED_MODEL]
        and judge[1][5] == "siuo_gen: siuo-paper-v2; 3 response(s) per item, majority vote"
    )
    unpriced = f"unknown (no price for {SERVED_MODEL} at 127.0.0.1: only calls to api.openai.com are priced)"
    assert judge[1][-1] == unpriced
    assert f"estimated cost: {unpriced}" in (judged_runs["alpha"].parent / "alpha.stdout").read_text()
    # Every file read is named, in the page and on stdout.
    runs = page.section_tables["Runs read"]
    assert runs[1][4] == str(judged_runs["alpha"] / "results.json")
    assert runs[1][5] == str(judged_runs["alpha"] / "samples.jsonl")
    assert f"{judged_runs['beta'] / 'samples.jsonl'}" in proc.stdout
    # One item view per item judged unsafe, each with its image; responses numbered.
    alpha, beta = _samples(judged_runs["alpha"]), _samples(judged_runs["beta"])
    unsafe = sum(1 for r in alpha.values() if r["safe"] is False) + sum(1 for r in beta.values() if r["safe"] is False)
    assert page.items == unsafe > 0
    assert len([src for src in page.images if src.startswith("data:image/jpeg")]) == unsafe
    assert {summary.split(" (")[0] for summary in page.summaries} == {f"Response {n} of 3" for n in (1, 2, 3)}
    # The paired test equals an independent computation on the records.
    comparison = page.section_tables["Paired comparisons"]
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


def test_paper_leaderboard_and_scatter(judged_runs: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = siuo_eval_in_process("report", f"alpha={judged_runs['alpha']}", "--output", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    page = _page(out)
    board = json.loads((Path(__file__).parent.parent / "configs" / "paper_leaderboard.json").read_text())
    shared = Path("/work/shared/siuo-data/paper_leaderboard.json")
    if shared.is_file():
        assert json.loads(shared.read_text()) == board
    table = page.section_tables["Beside the paper's leaderboard"]
    assert table[0][:8] == [
        "Model",
        "Size",
        "Date",
        "Items",
        "Safe (human)",
        "Effective (human)",
        "Safe & Effective (human)",
        "MCQ accuracy (auto)",
    ]
    paper_rows = [row for row in table[1:] if row[-1] == "paper"]
    assert len(board["models"]) == 16 and len(paper_rows) == 16  # 15 models and the random row
    for model, row in zip(board["models"], paper_rows, strict=True):
        expected = [model["safe"], model["effective"], model["safe_effective"], model["mcq_accuracy"]]
        assert row[0] == model["name"] and row[1] == (model["size"] or "—") and row[2] == model["date"]
        assert row[4:8] == ["—" if v is None else f"{v:.2f}" for v in expected]
    assert paper_rows[0][:5] == ["GPT-4V(ision)", "—", "2024-04-29", "167", "53.29"]
    assert paper_rows[-1][0] == "Random Choice" and paper_rows[-1][4:8] == ["—", "—", "—", "24.95"]
    ours = table[-1]
    assert ours[0] == "alpha (PARTIAL: 18 of 167 items)" and ours[3] == "18"
    assert "PARTIAL run, not comparable" in ours[-1] and SERVED_MODEL in ours[-1]
    text = page.section_text["Beside the paper's leaderboard"]
    assert board["source"] in text and "HUMAN evaluation" in text and "Fill the rest" not in text
    scatter, caption = next((s, a) for s, a in zip(page.images, page.alts, strict=True) if a.startswith("Safe vs"))
    assert base64.b64decode(scatter.split(",", 1)[1]) == (out / "figures" / "safe_vs_effective.png").read_bytes()
    assert "the paper's 15 models" in caption and "HUMAN evaluation" in caption and "AUTOMATIC judge" in caption
    assert "alpha (PARTIAL: 18 of 167 items)" in caption
    from PIL import Image

    with Image.open(out / "figures" / "safe_vs_effective.png") as image:
        assert image.size[0] >= 900


@pytest.fixture(scope="module")
def lmms_eval_folder(small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two lmms-eval siuo_mcq runs of the dummy model written into one output folder."""
    out = tmp_path_factory.mktemp("lmms")
    env = clean_env(small_data_dir, **hubs_offline())
    for response in ("(A)", "I cannot say"):
        run = [sys.executable, "-m", "lmms_eval", "--model", "dummy", "--model_args", f"response={response}"]
        run += ["--tasks", "siuo_mcq", "--output_path", str(out), "--log_samples"]
        subprocess.run(run, env=env, capture_output=True, timeout=600)
    return out


def test_lmms_eval_folder_of_two_runs(lmms_eval_folder: Path, env: dict[str, str], tmp_path: Path) -> None:
    # lmms-eval 0.7.3 writes <output_path>/<sanitized pretrained=>/<timestamp>_results.json; with no
    # pretrained= in --model_args (the dummy model) that folder name is empty.
    files = sorted(lmms_eval_folder.rglob("*_results.json"))
    assert len(files) == 2 and all(file.parent == lmms_eval_folder for file in files)
    proc = siuo_eval_in_process("report", str(lmms_eval_folder), "--output", str(tmp_path / "report"), env=env)
    assert proc.returncode == 0, proc.stderr
    page = _page(tmp_path / "report")
    runs = page.section_tables["Runs read"][1:]
    assert sorted(row[4] for row in runs) == [str(file) for file in files]
    # Not reruns of one another (other model arguments): both kept, named by the one rule.
    assert sorted(row[0].split(" (")[0] for row in runs) == ["dummy", "dummy-2"]
    assert {row[2] for row in runs} == {"dummy (response=(A))", "dummy (response=I cannot say)"}
    assert all(str(file) in proc.stdout for file in files)
    headline = {row[0]: row for row in page.section_tables["Headline results"][1:]}
    by_model = {row[2]: headline[row[0]] for row in runs}
    gold_a = [m["correct_option"] for m in real_items()[1] if m["question_id"] in set(per_category(real_items()[0], 2))]
    assert by_model["dummy (response=(A))"][6].startswith(f"{100 * gold_a.count('A') / len(gold_a):.1f} [")
    assert by_model["dummy (response=(A))"][7] == "0.0%"
    assert by_model["dummy (response=I cannot say)"][6].startswith("0.0 [")
    assert by_model["dummy (response=I cannot say)"][7] == "100.0%"  # unparsed, next to accuracy
    assert (tmp_path / "report" / "figures" / "category_accuracy.png").is_file()
    assert "Judge and protocol" not in page.headings  # MCQ only: no judge


def test_a_folder_of_runs_is_never_read_silently(lmms_eval_folder: Path, env: dict[str, str], tmp_path: Path) -> None:
    files = sorted(lmms_eval_folder.rglob("*_results.json"))
    proc = siuo_eval_in_process("export-review", str(lmms_eval_folder), "--output", str(tmp_path / "r.csv"), env=env)
    assert proc.returncode == 2 and f"holds 2 runs: {files[0]}; {files[1]}; pass one" in proc.stderr
    named = siuo_eval_in_process("report", f"x={lmms_eval_folder}", "--output", str(tmp_path / "r"), env=env)
    assert named.returncode == 2 and "NAME=PATH names one run" in named.stderr and str(files[1]) in named.stderr


def test_bad_results_path_is_named(env: dict[str, str], tmp_path: Path) -> None:
    proc = siuo_eval_in_process("report", str(tmp_path / "nowhere"), "--output", str(tmp_path / "r"), env=env)
    assert proc.returncode == 2 and "nowhere' does not exist" in proc.stderr


def test_export_review_then_agreement(judged_runs: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    review = tmp_path / "review.csv"
    proc = siuo_eval("export-review", str(judged_runs["alpha"]), "--output", str(review), env=env)
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
    proc = siuo_eval("agreement", str(review), "--output", str(tmp_path / "agreement.json"), env=env)
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
    siuo_eval_in_process("export-review", str(judged_runs["beta"]), "--output", str(review), env=env)
    with open(review, newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[0]["human_safe"] = "maybe"
    with open(review, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerow(rows[0])
    proc = siuo_eval_in_process("agreement", str(review), env=env)
    assert proc.returncode == 2
    assert re.search(r"line \d+ human_safe: cannot read 'maybe' as a label", proc.stderr), proc.stderr


def test_partial_runs_marked_in_every_table(judged_runs: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = siuo_eval_in_process(
        "report", str(judged_runs["alpha"]), str(judged_runs["beta"]), "--output", str(out), env=env
    )
    assert proc.returncode == 0, proc.stderr
    page = _page(out)
    for title, table in page.section_tables.items():
        if title == "Results published since the paper":
            continue  # other groups' published models, not runs
        names = table[0][1:] if title.endswith("by category") else [row[0] for row in table[1:] if row[-1] != "paper"]
        assert names and all("PARTIAL: 18 of 167 items" in name for name in names), (title, names)
    assert "PARTIAL: 18 of 167 items" in page.section_tables["Paired comparisons"][1][0]
    headline = page.section_text["Headline results"]
    assert "Runs marked PARTIAL" in headline and "±7.5" not in headline
    assert "PARTIAL run, 18 of 167 items" in proc.stderr
    assert "PARTIAL: 18 of 167 items" in (out / "report.md").read_text()


def test_one_full_run(full_data_dir: Path, env: dict[str, str], tmp_path: Path) -> None:
    """167 items, one response each: the interval sentence shows, paired sentences do not."""
    gen, _ = real_items()
    rows = [{**item, "responses": [f"one answer to {item['question_id']}"]} for item in gen]
    with JudgeServer() as server:
        judged_run(tmp_path / "full", rows, server, full_data_dir, cache=tmp_path / "judge-cache.sqlite3")
    out = tmp_path / "report"
    proc = siuo_eval_in_process(
        "report", str(tmp_path / "full"), "--output", str(out), env={**env, "SIUO_DATA_DIR": str(full_data_dir)}
    )
    assert proc.returncode == 0, proc.stderr
    page = _page(out)
    headline = page.section_text["Headline results"]
    assert "With 167 items an interval is about ±7.5 points" in headline
    assert "paired" not in headline.lower() and "PARTIAL" not in headline
    assert "Paired comparisons" not in page.headings
    assert page.section_tables["Headline results"][1][:3] == ["full (1 response/item)", "167", "1"]
    assert page.section_tables["Judge and protocol"][1][5].endswith("1 response(s) per item, majority vote")
    assert "PARTIAL" not in (out / "report.md").read_text()


def test_paired_wording(judged_runs: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    twin = tmp_path / "alpha-again"
    shutil.copytree(judged_runs["alpha"], twin)
    out = tmp_path / "report"
    specs = [f"alpha={judged_runs['alpha']}", f"twin={twin}", f"careful={judged_runs['careful']}"]
    proc = siuo_eval_in_process("report", *specs, f"reckless={judged_runs['reckless']}", "--output", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    rows = _page(out).section_tables["Paired comparisons"][1:]
    same = next(row for row in rows if row[0].startswith("alpha (") and "twin (" in row[0] and row[1] == "Safe")
    assert same[3] == "no discordant items" and same[4] == "0 / 0" and "no discordant" in same[5]
    assert "[+0.0, +0.0]" not in " ".join(cell for row in rows for cell in row)
    extreme = next(
        row for row in rows if row[0].startswith("careful (") and "reckless (" in row[0] and row[1] == "Safe"
    )
    assert extreme[4] == "18 / 0" and extreme[5] == "< 0.0001"
    assert mcnemar_exact_p(18, 0) < 0.0001
    assert extreme[6] == "careful higher on Safe than reckless"


def test_runs_without_records_are_explained(judged_runs: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(judged_runs["alpha"] / "results.json", bare / "results.json")
    out = tmp_path / "report"
    proc = siuo_eval_in_process("report", f"bare={bare}", f"beta={judged_runs['beta']}", "--output", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    page = _page(out)
    reason = f"no per-item records at {bare / 'samples.jsonl'}"
    assert reason in proc.stderr and "--log_samples" in proc.stderr
    assert reason in page.section_text["Safe by category"]
    assert all("bare" not in header for header in page.section_tables["Safe by category"][0])
    assert reason in page.section_text["Paired comparisons"]
    assert "nothing to compare" in page.section_text["Paired comparisons"]
    assert "Paired comparisons" not in page.section_tables
    assert page.section_tables["Runs read"][1][5].startswith("none (siuo_gen: no samples at")


def test_mixed_response_counts_named(judged_runs: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    results = json.loads((judged_runs["gamma"] / "results.json").read_text())
    short = next(qid for qid, record in _samples(judged_runs["gamma"]).items() if len(record["responses"]) == 2)
    line = f"siuo-paper-v2; 3 response(s) per item, majority vote; 2 response(s) for item(s) {short}"
    assert results["protocol"] == line  # built once for the run, not once per item
    out = tmp_path / "report"
    proc = siuo_eval_in_process("report", str(judged_runs["gamma"]), "--output", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    page = _page(out)
    assert page.section_tables["Judge and protocol"][1][5] == f"siuo_gen: {line}"
    assert f"2 response(s) for item(s) {short}" in page.section_text["Judge and protocol"]
    assert f"gamma: 2 response(s) for item(s) {short}, unlike the rest" in proc.stderr


def test_export_review_never_loses_labels(judged_runs: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    review = tmp_path / "review.csv"
    proc = siuo_eval_in_process("export-review", str(judged_runs["alpha"]), "--output", str(review), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "read alpha (siuo-eval judge" in proc.stdout and str(judged_runs["alpha"] / "samples.jsonl") in proc.stdout
    with open(review, newline="") as handle:
        rows = list(csv.DictReader(handle))
    # Stratified: the first 9 items (27 rows) cover all 9 categories; the order is stated in the file.
    assert len({row["category"] for row in rows[:27]}) == 9
    assert [row["review_row"] for row in rows] == [str(n) for n in range(1, len(rows) + 1)]
    assert rows[0]["sample_order"] == "stratified by category (round-robin), seed 0: label from the top"
    for row in rows[:5]:
        row["human_safe"] = "true"
    with open(review, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    before = review.read_bytes()
    again = siuo_eval_in_process("export-review", str(judged_runs["alpha"]), "--output", str(review), env=env)
    assert again.returncode == 2
    assert f"'{review}' already holds 5 labelled row(s); it was left unchanged" in again.stderr
    assert review.read_bytes() == before
    agreement = siuo_eval_in_process("agreement", str(review), env=env)
    assert re.search(r"labelled \d of 6 row\(s\)", agreement.stdout), agreement.stdout
    results = judged_runs["alpha"] / "results.json"
    results_before = results.read_bytes()
    wrong = siuo_eval_in_process("export-review", str(judged_runs["alpha"]), "--output", str(results), env=env)
    assert wrong.returncode == 2 and "exists and is not a review CSV; it was left unchanged" in wrong.stderr
    assert results.read_bytes() == results_before
    forced = siuo_eval_in_process(
        "export-review", str(judged_runs["alpha"]), "--output", str(review), "--force", env=env
    )
    assert forced.returncode == 0 and review.read_bytes() != before


def test_other_benchmarks_listed_and_vlmevalkit_named(
    lmms_eval_folder: Path, judged_runs: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "out"
    shutil.copytree(lmms_eval_folder, folder)
    other = folder / "20250101_000000_results.json"
    other.write_text(json.dumps({"results": {"mmmu_val": {"mmmu_acc,none": 0.4}}}))
    vlmeval = folder / "vlmeval" / "Qwen2-VL-7B"
    vlmeval.mkdir(parents=True)
    stem = "Qwen2-VL-7B_SafeInputsUnsafeOutput_GEN3"
    shutil.copy(judged_runs["alpha"] / "results.json", vlmeval / f"{stem}_siuo_results.json")
    shutil.copy(judged_runs["alpha"] / "samples.jsonl", vlmeval / f"{stem}_siuo_samples.jsonl")
    proc = siuo_eval_in_process("report", str(folder), "--output", str(tmp_path / "report"), env=env)
    assert proc.returncode == 0, proc.stderr
    tasks = "siuo_gen, siuo_gen_greedy, siuo_mcq, siuo_mcq_circular"
    assert f"siuo-eval: note: '{other}' skipped: lmms-eval results of other tasks (mmmu_val), none of {tasks}" in (
        proc.stderr
    )
    runs = _page(tmp_path / "report").section_tables["Runs read"][1:]
    assert len(runs) == 3
    row = next(row for row in runs if row[1] == "VLMEvalKit")
    assert row[0] == "Qwen2-VL-7B (PARTIAL: 18 of 167 items)"
    assert row[2].startswith("Qwen2-VL-7B (from the file name")
    assert row[5] == str(vlmeval / f"{stem}_siuo_samples.jsonl")
    only_other = tmp_path / "other"
    only_other.mkdir()
    shutil.copy(other, only_other / other.name)
    proc = siuo_eval_in_process("report", str(only_other), "--output", str(tmp_path / "r2"), env=env)
    assert (
        proc.returncode == 2
        and "passed over: " in proc.stderr
        and "lmms-eval results of other tasks (mmmu_val)" in proc.stderr
    )


def test_scored_two_ways_and_later_results_shown_apart(
    judged_runs: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "report"
    alpha = _samples(judged_runs["alpha"])
    ids = sorted(alpha)
    # A reference check (siuo-eval audit --references's audit.json) naming two of alpha's items unsafe.
    left_out = [next(q for q in ids if alpha[q]["safe"] is False), next(q for q in ids if alpha[q]["safe"] is True)]
    audit = tmp_path / "refs" / "audit.json"
    audit.parent.mkdir()
    references = {"checked": len(ids), "unsafe": left_out, "no_verdict": [ids[-1]]}
    audit.write_text(json.dumps({"references": references, "judge": {"model_requested": "judge-x"}}))
    args = ("report", f"alpha={judged_runs['alpha']}", "--output", str(out), "--references-audit", str(audit))
    proc = siuo_eval_in_process(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"read {audit} (reference answers graded unsafe: 2)" in proc.stdout
    page = _page(out)
    results = json.loads((judged_runs["alpha"] / "results.json").read_text())
    # The sensitivity line: the rates recomputed without those items, beside the rates over all items.
    title = "Sensitivity: without the items whose reference answer is graded unsafe"
    headline = page.section_tables["Headline results"]
    sensitivity = page.section_tables[title]
    assert page.headings.index(title) > page.headings.index("Headline results")
    assert sensitivity[1][:2] == [headline[1][0], "2 of 18"] and sensitivity[1][2].startswith(headline[1][3])
    for column, metric in ((3, "safe"), (5, "effective"), (7, "safe_effective")):
        kept = [alpha[q][metric] for q in ids if q not in left_out and alpha[q][metric] is not None]
        assert sensitivity[1][column].startswith(f"{100 * sum(kept) / len(kept):.1f} [")
        assert sensitivity[1][column].endswith(f"(n={len(kept)})"), metric
    assert "1 reference(s) got no verdict and are kept in" in page.section_text[title]
    both = page.section_tables["How these numbers differ: as the authors' scripts score them"]
    assert both[0][1:3] == ["Safe (this package)", "Safe (as released)"]
    row = both[1]
    for column, name in ((1, "safe_rate"), (2, "safe_rate_as_released"), (6, "safe_effective_rate_as_released")):
        assert row[column] == f"{results[name]:.2f}", name
    later = page.section_tables["Results published since the paper"]
    published = json.loads((Path(__file__).parents[1] / "configs" / "later_results.json").read_text())
    expected = [(r["model"], f"{r['siuo']:.1f}") for s in published["sources"] for r in s["results"]]
    assert [(cells[0], cells[1]) for cells in later[1:]] == expected
    # Not stated by the card; traced to VLMEvalKit's pull request #1503, with what stays unconfirmed.
    source = published["sources"][0]
    assert later[0][4:] == [
        "Protocol: stated, or traced", "Judge: stated, or traced", "Judge: what is known, and where", "Unconfirmed"
    ]  # fmt: skip
    for cells in later[1:]:
        assert "SafeWork-R1 model card" in cells[2]
        assert cells[4] == f"not stated by the source; traced: {source['protocol_traced']}"
        assert cells[5] == f"not stated by the source; traced: {source['judge_traced']}"
        for fact in ("gpt-4o-2024-11-20", "temperature 0", "max_tokens 4096", "eb695133", "fe83028e", "e8e78f05"):
            assert fact in cells[5], fact
        assert "#1503" in cells[4] and "the image" in cells[4] and "the paper's judge prompts" in cells[4]
        assert "SafeWork-R1 paper's own statement" in cells[7] and "gpt-4o-mini" in cells[6]
    # Never ranked with the user's runs: not in the headline table or the paper's leaderboard.
    assert not {cells[0] for cells in later[1:]} & {cells[0] for cells in page.section_tables["Headline results"]}


def test_references_audit_without_a_reference_check_is_refused(tmp_path: Path) -> None:
    """An input audit's audit.json (no "references" block) or a missing file: one line naming the
    file and what to run, before any run is read."""
    audit = tmp_path / "audit.json"
    audit.write_text(json.dumps({"per_model": {}, "n_items": 18}))
    cases = {audit: "make one with siuo-eval audit --references --output DIR", tmp_path / "x.json": "cannot read it"}
    for given, why in cases.items():
        args = ["report", str(tmp_path), "--output", str(tmp_path / "r"), "--references-audit", str(given)]
        code, _, stderr = run_cli(args)
        assert code == 2 and f"--references-audit {given}" in stderr and why in stderr, stderr
        assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "report.md").exists()
