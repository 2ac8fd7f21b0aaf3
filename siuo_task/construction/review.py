"""Step 4 of the construction method, first half: the review page and the review CSV.

``review.html`` is self-contained (thumbnails inlined as data URLs) and shows every candidate
with each stage's decision, reason and model. ``review.csv`` holds one row per candidate that
passed stages 1-3: the item's fields (edit them in place), each stage's verdict, and the
columns a reviewer fills: accept / edit / reject (mark exactly one) and note.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path
from typing import Any

from PIL import Image

from siuo_task.construction.files import write_text_atomic
from siuo_task.construction.pipeline import IMAGE_DIR, load_build
from siuo_task.errors import DataError

ITEM_COLUMNS = ("category", "question", "safety_warning", "reference_answer")
OPTION_COLUMNS = ("option_A", "option_B", "option_C", "option_D", "correct_option")
VERDICT_COLUMNS = ("query_verdict", "reflect_verdict", "text_answer", "text_judge_verdict")
DECISION_COLUMNS = ("accept", "edit", "reject", "note")
CSV_COLUMNS = ("candidate_id", "image_file", *ITEM_COLUMNS, *OPTION_COLUMNS, *VERDICT_COLUMNS, *DECISION_COLUMNS)
REVIEW_CSV = "review.csv"
REVIEW_HTML = "review.html"


def write_review(build_dir: Path, output: Path | None = None, force: bool = False) -> list[Path]:
    """Write review.csv and review.html for a finished build; never over a review without ``force``.

    Args:
        build_dir: the folder ``siuo-eval build`` wrote.
        output: where to write the two files (default: ``build_dir``).
        force: replace existing review files (a person's filled CSV is lost).
    """
    manifest, records = load_build(build_dir)
    target = output or build_dir
    paths = [target / REVIEW_CSV, target / REVIEW_HTML]
    existing = [str(path) for path in paths if path.exists()]
    if existing and not force:
        raise DataError(
            f"{', '.join(existing)} already exist(s) and may hold your review; "
            "pass --force to replace them, or --output DIR to write elsewhere"
        )
    write_text_atomic(paths[0], review_csv(build_dir, records))
    write_text_atomic(paths[1], review_html(build_dir, manifest, records))
    return paths


def _stage(record: dict[str, Any], stage: str) -> dict[str, Any] | None:
    return next((entry for entry in record["stages"] if entry["stage"] == stage), None)


def _verdict(entry: dict[str, Any] | None) -> str:
    return "" if entry is None else f"{entry['decision']}: {entry['reason']}"


def review_row(build_dir: Path, record: dict[str, Any]) -> dict[str, str]:
    item = record["item"]
    answer = _stage(record, "text_answer")
    row = {
        "candidate_id": record["candidate_id"],
        "image_file": str((build_dir / IMAGE_DIR / record["image"]).resolve()),
        **{column: item[column] for column in ITEM_COLUMNS},
        **{f"option_{letter}": item["options"][letter] for letter in "ABCD"},
        "correct_option": item["correct_option"],
        "query_verdict": _verdict(_stage(record, "query")),
        "reflect_verdict": _verdict(_stage(record, "reflect")),
        "text_answer": (answer or {}).get("reply") or "",
        "text_judge_verdict": _verdict(_stage(record, "text_judge")),
    }
    return {**row, **dict.fromkeys(DECISION_COLUMNS, "")}


def review_csv(build_dir: Path, records: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        if record["status"] == "passed":
            writer.writerow(review_row(build_dir, record))
    return buffer.getvalue()


def thumbnail_data_url(path: Path, side: int = 256) -> str:
    with Image.open(path) as source:
        image = source.convert("RGB")
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:0.5em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} .card{border:1px solid #ddd;margin:1em 0;padding:1em;overflow:auto}
.card img{max-width:256px;float:right;margin-left:1em} .reject,.refused,.error{color:#a00}
.accept{color:#060} pre{white-space:pre-wrap;font-size:12px;color:#444}
"""


def _card(build_dir: Path, record: dict[str, Any]) -> str:
    esc = html.escape
    parts = [f"<div class='card' id='{esc(record['candidate_id'])}'>"]
    parts.append(f"<img alt='' src='{thumbnail_data_url(build_dir / IMAGE_DIR / record['image'])}'>")
    where = f" at {record['stopped_at']}" if record["stopped_at"] else ""
    source = f"source: {record['source_image']}" + (f" ({record['image_note']})" if record["image_note"] else "")
    parts.append(f"<h3>{esc(record['candidate_id'])}: {esc(record['status'] + where)}</h3><p>{esc(source)}</p>")
    if record["item"]:
        item = record["item"]
        fields = [(name, item[name]) for name in ITEM_COLUMNS]
        fields += [(f"option {letter}", item["options"][letter]) for letter in "ABCD"]
        fields.append(("correct option", item["correct_option"]))
        parts.append("<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in fields))
        parts.append("</table>")
    rows = "".join(
        f"<tr><td>{esc(e['stage'])}</td><td>{esc(e['model_requested'])}</td>"
        f"<td class='{esc(e['decision'])}'>{esc(e['decision'])}</td><td>{esc(e['reason'])}"
        + "".join(f"<br>attempt error: {esc(err)}" for err in e["errors"])
        + f"<details><summary>reply</summary><pre>{esc(e['reply'] or '')}</pre></details></td></tr>"
        for e in record["stages"]
    )
    parts.append(f"<table><tr><th>stage</th><th>model</th><th>decision</th><th>reason</th></tr>{rows}</table></div>")
    return "".join(parts)


def review_html(build_dir: Path, manifest: dict[str, Any], records: list[dict[str, Any]]) -> str:
    esc = html.escape
    settings = manifest["settings"]
    head = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>SIUO build review</title><style>{_STYLE}</style>"]
    head.append("</head><body><h1>SIUO build review</h1>")
    head.append(
        f"<p>{manifest['candidates']} candidate(s): {esc(str(manifest['status_counts']))}. Prompts "
        f"{esc(settings['prompt_version'])}; models {esc(str(settings['models']))}. Fill accept / edit / reject "
        f"(exactly one) and note in {REVIEW_CSV}, editing fields in place, then run "
        f"<code>siuo-eval build finalize {REVIEW_CSV} --output DATA_DIR</code>.</p>"
    )
    passed = [r for r in records if r["status"] == "passed"]
    stopped = [r for r in records if r["status"] != "passed"]
    body = ["<h2>Passed stages 1-3 (to review)</h2>", *(_card(build_dir, r) for r in passed)]
    body += ["<h2>Stopped by a stage</h2>", *(_card(build_dir, r) for r in stopped)]
    return "".join(head + body) + "</body></html>"
