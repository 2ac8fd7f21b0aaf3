"""Step 4, second half: a reviewed CSV becomes a SIUO data folder (``siuo-eval build finalize``).

The folder holds siuo_gen.json, siuo_mcqa.json, images/ and datasheet.md (plus provenance.json)
and passes the loader's validation before it is moved into place, so it works as SIUO_DATA_DIR
for every harness. Question ids are ``category_index * 1000 + 100 + n``: the original items are
``category_index * 1000 + NN`` with NN < 100, so the two never collide.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siuo_task.benchmark.categories import KNOWN_CATEGORIES
from siuo_task.benchmark.data import GEN_FILE, MCQ_FILE, load_siuo
from siuo_task.construction.files import dump_json
from siuo_task.construction.pipeline import IMAGE_DIR, load_build
from siuo_task.construction.review import CSV_COLUMNS, ITEM_COLUMNS
from siuo_task.errors import DataError

BUILT_ID_OFFSET = 100
MAX_PER_CATEGORY = 900
DECISIONS = ("accept", "edit", "reject")


@dataclass(frozen=True, slots=True)
class Reviewed:
    """One reviewed row: the candidate, the decision, the item fields as they stand in the CSV."""

    candidate_id: str
    decision: str
    note: str
    fields: dict[str, Any]


def read_reviewed(path: Path, records: dict[str, dict[str, Any]], categories: list[str]) -> list[Reviewed]:
    """Rows of a filled review CSV, checked against the build; every problem is listed at once.

    Raises:
        DataError: missing columns, unknown candidates, no or several decisions, invalid fields,
            or fields changed on a row marked accept.
    """
    if not path.is_file():
        raise DataError(f"reviewed CSV '{path}' does not exist; run `siuo-eval build review DIR` and fill it")
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"'{path}' lacks column(s) {missing}: pass the review.csv that `build review` wrote")
        rows = list(reader)
    reviewed, problems = [], []
    for number, row in enumerate(rows, start=2):
        try:
            reviewed.append(_row(row, records, categories))
        except DataError as exc:
            problems.append(f"line {number} ({row.get('candidate_id') or 'no candidate_id'}): {exc}")
    if problems:
        raise DataError(f"'{path}' has {len(problems)} problem(s):\n  - " + "\n  - ".join(problems[:30]))
    return reviewed


def _row(row: dict[str, str], records: dict[str, dict[str, Any]], categories: list[str]) -> Reviewed:
    cid = (row.get("candidate_id") or "").strip()
    record = records.get(cid)
    if record is None or record["status"] != "passed":
        raise DataError(f"'{cid}' is not a candidate that passed stages 1-3 in this build")
    marked = [name for name in DECISIONS if (row.get(name) or "").strip()]
    if len(marked) != 1:
        raise DataError(f"mark exactly one of accept / edit / reject (found {marked or 'none'})")
    fields: dict[str, Any] = {name: (row.get(name) or "").strip() for name in ITEM_COLUMNS}
    fields["options"] = {letter: (row.get(f"option_{letter}") or "").strip() for letter in "ABCD"}
    fields["correct_option"] = (row.get("correct_option") or "").strip().upper()
    original = {key: record["item"][key] for key in (*ITEM_COLUMNS, "options", "correct_option")}
    if marked[0] == "accept" and fields != original:
        changed = sorted(key for key in original if fields[key] != original[key])
        raise DataError(f"field(s) {changed} were changed but 'accept' is marked; mark 'edit' to keep the changes")
    if marked[0] != "reject":
        _check_fields(fields, categories)
    return Reviewed(cid, marked[0], (row.get("note") or "").strip(), fields)


def _check_fields(fields: dict[str, Any], categories: list[str]) -> None:
    empty = [name for name in ITEM_COLUMNS if not fields[name]]
    empty += [f"option_{letter}" for letter, text in fields["options"].items() if not text]
    if empty:
        raise DataError(f"field(s) {empty} are empty")
    if fields["category"] not in categories:
        raise DataError(f"category {fields['category']!r} is not one of this build's {categories}")
    if fields["correct_option"] not in ("A", "B", "C", "D"):
        raise DataError(f"correct_option is {fields['correct_option']!r}, expected A, B, C or D")


def category_index(category: str, categories: list[str]) -> int:
    """1-9 for the SIUO domains (as in the original ids); 10, 11, ... for a build's own categories."""
    if category in KNOWN_CATEGORIES:
        return KNOWN_CATEGORIES.index(category) + 1
    extra = [c for c in categories if c not in KNOWN_CATEGORIES]
    return 10 + extra.index(category)


def assign_ids(kept: list[Reviewed], categories: list[str]) -> dict[str, int]:
    """question_id per candidate: category_index * 1000 + 100 + n, n counting in candidate order."""
    counts: Counter[str] = Counter()
    ids = {}
    for row in sorted(kept, key=lambda r: r.candidate_id):
        category = row.fields["category"]
        if counts[category] >= MAX_PER_CATEGORY:
            raise DataError(f"more than {MAX_PER_CATEGORY} items in category {category!r}: split the build")
        ids[row.candidate_id] = category_index(category, categories) * 1000 + BUILT_ID_OFFSET + counts[category]
        counts[category] += 1
    return ids


@dataclass(frozen=True, slots=True)
class FinalizeResult:
    output: Path
    read: tuple[Path, ...]
    items: int
    merged: int
    decisions: dict[str, int]


def finalize(
    reviewed_csv: Path, output: Path, build_dir: Path | None = None, merge_with: Path | None = None, force: bool = False
) -> FinalizeResult:
    """Write the SIUO data folder ``output`` from a reviewed CSV (build folder: the CSV's folder).

    Raises:
        DataError: bad review, id collisions with ``merge_with``, or ``output`` exists without ``force``.
    """
    build_dir = build_dir or reviewed_csv.parent
    if output.exists() and not force:
        raise DataError(f"'{output}' already exists; choose a new --output, or pass --force to replace it")
    manifest, records = load_build(build_dir)
    categories = list(manifest["settings"]["categories"])
    by_id = {record["candidate_id"]: record for record in records}
    reviewed = read_reviewed(reviewed_csv, by_id, categories)
    kept = [row for row in reviewed if row.decision != "reject"]
    if not kept:
        raise DataError(f"'{reviewed_csv}' accepts or edits no item, so there is nothing to write")
    ids = assign_ids(kept, categories)
    original = load_siuo(merge_with) if merge_with is not None else None
    gen_rows, mcq_rows = _original_rows(original)
    clash = sorted(set(ids.values()) & {row["question_id"] for row in gen_rows})
    if clash:
        raise DataError(f"question ids {clash[:10]} of the built items are already in '{merge_with}'")
    output.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name each time: the loader caches by folder, so a reused name could be validated stale.
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    (staging / IMAGE_DIR).mkdir()
    try:
        _copy_original_images(original, staging)
        for row in sorted(kept, key=lambda r: ids[r.candidate_id]):
            record = by_id[row.candidate_id]
            image = f"built-{ids[row.candidate_id]}{Path(record['image']).suffix}"
            shutil.copyfile(build_dir / IMAGE_DIR / record["image"], staging / IMAGE_DIR / image)
            gen_row, mcq_row = _item_rows(ids[row.candidate_id], image, row.fields)
            gen_rows.append(gen_row)
            mcq_rows.append(mcq_row)
        (staging / GEN_FILE).write_text(json.dumps(gen_rows, indent=1, ensure_ascii=False), encoding="utf-8")
        (staging / MCQ_FILE).write_text(json.dumps(mcq_rows, indent=1, ensure_ascii=False), encoding="utf-8")
        decisions = dict(Counter(row.decision for row in reviewed))
        provenance = _provenance(kept, ids, by_id)
        (staging / "provenance.json").write_text(dump_json(provenance), encoding="utf-8")
        text = datasheet(manifest, decisions, kept, original is not None and merge_with, len(gen_rows))
        (staging / "datasheet.md").write_text(text, encoding="utf-8")
        load_siuo(staging)  # the loader's own validation, before anything replaces the output
        staging.chmod(0o755)  # mkdtemp makes it private; a data folder is meant to be shared
        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    read = (reviewed_csv, build_dir / "build.json", *([merge_with] if merge_with else []))
    return FinalizeResult(output, read, len(gen_rows), len(gen_rows) - len(kept), decisions)


def _original_rows(original: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if original is None:
        return [], []
    gen = [
        {"question_id": i.question_id, "image": i.image, "question": i.question, "category": i.category,
         "safety_warning": i.safety_warning, "reference_answer": i.reference_answer}
        for i in original.gen
    ]  # fmt: skip
    mcq = [
        {"question_id": i.question_id, "image": i.image, "question": i.question, "category": i.category,
         "options": dict(i.options), "correct_option": i.correct_option}
        for i in original.mcq
    ]  # fmt: skip
    return gen, mcq


def _copy_original_images(original: Any, staging: Path) -> None:
    if original is None:
        return
    for item in original.gen:
        shutil.copyfile(item.image_path, staging / IMAGE_DIR / item.image)


def _item_rows(qid: int, image: str, fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    common = {"question_id": qid, "image": image, "question": fields["question"], "category": fields["category"]}
    gen = {**common, "safety_warning": fields["safety_warning"], "reference_answer": fields["reference_answer"]}
    mcq = {**common, "options": fields["options"], "correct_option": fields["correct_option"]}
    return gen, mcq


def _provenance(kept: list[Reviewed], ids: dict[str, int], by_id: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        str(ids[row.candidate_id]): {
            "candidate_id": row.candidate_id,
            "review": row.decision,
            "note": row.note,
            "source_image": by_id[row.candidate_id]["source_image"],
            "source_sha256": by_id[row.candidate_id]["source_sha256"],
            "stages": by_id[row.candidate_id]["stages"],
        }
        for row in kept
    }


def datasheet(
    manifest: dict[str, Any], decisions: dict[str, int], kept: list[Reviewed], merged: Any, total: int
) -> str:
    """datasheet.md: where the items came from and what each step kept."""
    settings = manifest["settings"]
    per_category = Counter(row.fields["category"] for row in kept)
    lines = [
        "# Datasheet: SIUO-style items built with siuo-eval build",
        "",
        f"- Items in this folder: {total} ({len(kept)} built" + (f", merged with '{merged}')" if merged else ")"),
        f"- Source images: `{settings['images_dir']}` ({manifest['images_available']} usable, "
        f"{len(manifest['image_problems'])} file(s) left out: unreadable or duplicates)",
        f"- Candidates: {manifest['candidates']} (seed {settings['seed']}, count {settings['count'] or 'all'})",
        f"- Models: query and reflection `{settings['models']['generator']}`, text-only answers "
        f"`{settings['models']['answerer']}`, text-safety judge `{settings['models']['judge']}` at "
        f"`{settings['endpoint']}`, temperature {settings['temperature']}",
        f"- Stage prompts: version `{settings['prompt_version']}` (sha256 {settings['prompts_sha256'][:16]}), "
        "this project's own prompts (the paper did not publish its prompts)",
        f"- Human review: {decisions.get('accept', 0)} accepted, {decisions.get('edit', 0)} edited, "
        f"{decisions.get('reject', 0)} rejected",
        "",
        "## Stage decisions",
        "",
        "| stage | " + " | ".join(("accept", "reject", "refused", "error")) + " |",
        "|---|---|---|---|---|",
    ]
    for stage, counts in manifest["stage_decisions"].items():
        lines.append(
            f"| {stage} | " + " | ".join(str(counts.get(k, 0)) for k in ("accept", "reject", "refused", "error")) + " |"
        )
    lines += ["", "## Built items per category", "", "| category | items |", "|---|---|"]
    lines += [f"| {category} | {count} |" for category, count in sorted(per_category.items())]
    lines += [
        "",
        "Per-item provenance (every stage's model, prompt version, raw reply, decision): provenance.json.",
        "",
    ]
    return "\n".join(lines)
