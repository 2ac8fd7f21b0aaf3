"""Loading and validating the SIUO items and images.

One loader serves every entry point. The data come from a folder in the authors' layout
(``siuo_gen.json``, ``siuo_mcqa.json``, ``images/<name>.png``): the folder given explicitly,
else ``SIUO_DATA_DIR``, else a pinned snapshot of the Hugging Face dataset repo
``sinwang/SIUO`` fetched with huggingface_hub. The hub repo is an image folder plus JSON,
so its auto-generated ``load_dataset`` rows are not trusted: the JSON is read and images are
joined by file name.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from siuo_task.benchmark.card import CARD
from siuo_task.benchmark.categories import KNOWN_CATEGORIES
from siuo_task.errors import DataError

logger = logging.getLogger(__name__)

# The authors' hub repo at a pinned revision (the eval card's), so every run reads the same files.
HUB_REPO_ID = CARD.data["hub_repo"]
HUB_REVISION = CARD.data["hub_revision"]
GEN_FILE = "siuo_gen.json"
MCQ_FILE = "siuo_mcqa.json"
IMAGE_DIR = "images"
DATA_DIR_ENV = "SIUO_DATA_DIR"
WHERE_IMAGES_ARE = (
    "the images are published on the Hugging Face dataset repo sinwang/SIUO (images/) and as "
    "SIUO-images.zip on the authors' Google Drive (see github.com/sinwang20/SIUO); unzip them "
    "into <data dir>/images/"
)

GEN_FIELDS: dict[str, type] = {
    "question_id": int,
    "image": str,
    "question": str,
    "category": str,
    "safety_warning": str,
    "reference_answer": str,
}
MCQ_FIELDS: dict[str, type] = {
    "question_id": int,
    "image": str,
    "question": str,
    "category": str,
    "options": dict,
    "correct_option": str,
}
MCQ_LETTERS = ("A", "B", "C", "D")


@dataclass(frozen=True, slots=True)
class GenItem:
    """One open-ended SIUO item."""

    question_id: int
    image: str
    image_path: Path
    question: str
    category: str
    safety_warning: str
    reference_answer: str


@dataclass(frozen=True, slots=True)
class McqItem:
    """One multiple-choice SIUO item."""

    question_id: int
    image: str
    image_path: Path
    question: str
    category: str
    options: Mapping[str, str]
    correct_option: str


@dataclass(frozen=True, slots=True)
class SiuoData:
    """Both item files of one data folder, validated against each other."""

    root: Path
    gen: tuple[GenItem, ...]
    mcq: tuple[McqItem, ...]


def resolve_data_dir(data_dir: str | os.PathLike[str] | None, named_by: str = "the data_dir argument") -> Path:
    """Where the data live: ``data_dir``, else the pinned hub snapshot ($SIUO_DATA_DIR is read
    by the entry point's ``siuo_task.settings.Settings``, which passes it here).

    Args:
        data_dir: a folder in the authors' layout, or None for the hub.
        named_by: where the folder came from, for the error that says it does not exist.
    """
    if data_dir is not None:
        root = Path(data_dir).expanduser().resolve()
        if not root.is_dir():
            raise DataError(
                f"SIUO data folder '{root}' does not exist (from {named_by}); "
                f"point it at a folder holding {GEN_FILE}, {MCQ_FILE} and {IMAGE_DIR}/, "
                f"or unset {DATA_DIR_ENV} to download {HUB_REPO_ID} from the Hugging Face hub"
            )
        return root
    return download_from_hub()


def download_from_hub(revision: str = HUB_REVISION) -> Path:
    """Fetch the item files and images of ``sinwang/SIUO`` at ``revision`` (cached by huggingface_hub).

    Args:
        revision: the commit of the dataset repo to read.
    """
    from huggingface_hub import snapshot_download

    # The first thing a user without a local copy reads: where the data come from, and the way out.
    logger.warning(
        "siuo-task: %s is not set: fetching %s@%s from the Hugging Face hub (set %s to a local copy to skip this)",
        DATA_DIR_ENV,
        HUB_REPO_ID,
        revision[:12],
        DATA_DIR_ENV,
    )
    try:
        path = snapshot_download(
            repo_id=HUB_REPO_ID,
            repo_type="dataset",
            revision=revision,
            allow_patterns=[GEN_FILE, MCQ_FILE, f"{IMAGE_DIR}/*"],
        )
    except Exception as exc:  # huggingface_hub raises many unrelated types
        raise DataError(
            f"could not download {HUB_REPO_ID}@{revision[:12]} from the Hugging Face hub "
            f"({type(exc).__name__}: {exc}); set {DATA_DIR_ENV} to a local copy instead "
            f"({WHERE_IMAGES_ARE})"
        ) from exc
    return Path(path)


@lru_cache(maxsize=4)
def _load_cached(root: Path) -> SiuoData:
    return _load_and_validate(root)


def load_siuo(data_dir: str | os.PathLike[str] | None, named_by: str = "the data_dir argument") -> SiuoData:
    """Load and validate both SIUO item files; cached per folder within a process.

    Args:
        data_dir: a folder in the authors' layout; None means the pinned hub snapshot (entry
            points pass $SIUO_DATA_DIR through ``Settings.data``).
        named_by: where ``data_dir`` came from, for the error that says it does not exist.

    Raises:
        DataError: naming every item, field or file at fault and what to do.
    """
    return _load_cached(resolve_data_dir(data_dir, named_by))


def _load_and_validate(root: Path) -> SiuoData:
    # Every check runs on whatever part of the files can be read, so one run lists every problem
    # (a missing field does not hide a missing image elsewhere).
    problems: list[str] = []
    gen_rows = _read_item_file(root / GEN_FILE, problems)
    mcq_rows = _read_item_file(root / MCQ_FILE, problems)
    problems += _check_rows(gen_rows, GEN_FIELDS, GEN_FILE)
    problems += _check_rows(mcq_rows, MCQ_FIELDS, MCQ_FILE)
    problems += _check_mcq_options(mcq_rows)
    problems += _check_agreement(gen_rows, mcq_rows)
    problems += _check_images(root, gen_rows)
    warnings = _unknown_categories(gen_rows)
    if problems:
        raise DataError(_summarise(root, problems, warnings))
    for warning in warnings:
        logger.warning("SIUO %s", warning)
    return SiuoData(
        root=root,
        gen=tuple(_gen_item(root, row) for row in gen_rows),
        mcq=tuple(_mcq_item(root, row) for row in mcq_rows),
    )


def _summarise(root: Path, problems: list[str], warnings: list[str], shown: int = 20) -> str:
    head = f"invalid SIUO data under '{root}' ({len(problems)} problem(s)):\n  - "
    body = "\n  - ".join(problems[:shown])
    more = f"\n  ... and {len(problems) - shown} more" if len(problems) > shown else ""
    also = "".join(f"\n  warning: {warning}" for warning in warnings[:shown])
    return head + body + more + also


def _read_item_file(path: Path, problems: list[str]) -> list[Any]:
    """The file's rows; a file that cannot be read adds its problem and counts as empty."""
    if not path.is_file():
        problems.append(
            f"missing SIUO item file '{path}': the data folder must hold {GEN_FILE} and {MCQ_FILE} "
            f"from github.com/sinwang20/SIUO (data/) or the {HUB_REPO_ID} hub repo"
        )
        return []
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        problems.append(f"'{path}' is not valid UTF-8 JSON ({exc}); re-download the file")
        return []
    if not isinstance(rows, list):
        problems.append(f"'{path}' must hold a JSON list of items, found {type(rows).__name__}")
        return []
    return rows


def _has(row: Any, field: str, kind: type) -> bool:
    return isinstance(row, Mapping) and isinstance(row.get(field), kind) and not isinstance(row.get(field), bool)


def _item_label(row: Any, index: int) -> str:
    if isinstance(row, Mapping) and "question_id" in row:
        return f"item {row['question_id']!r}"
    return f"item #{index} (no question_id)"


def _check_rows(rows: list[Any], fields: dict[str, type], file_name: str) -> list[str]:
    problems: list[str] = []
    seen: dict[Any, int] = {}
    for index, row in enumerate(rows):
        label = f"{file_name}: {_item_label(row, index)}"
        if not isinstance(row, Mapping):
            problems.append(f"{label}: is a {type(row).__name__}, expected a JSON object")
            continue
        for field, kind in fields.items():
            if field not in row:
                problems.append(f"{label}: missing field '{field}'")
            elif not isinstance(row[field], kind) or isinstance(row[field], bool):
                problems.append(f"{label}: field '{field}' is {type(row[field]).__name__}, expected {kind.__name__}")
            elif kind is str and not row[field].strip():
                problems.append(f"{label}: field '{field}' is empty")
        qid = row.get("question_id")
        if qid in seen:
            problems.append(f"{label}: duplicate question_id {qid!r} (also item #{seen[qid]})")
        elif isinstance(qid, int):
            seen[qid] = index
    return problems


def _check_mcq_options(rows: list[Any]) -> list[str]:
    problems: list[str] = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping) or not isinstance(row.get("options"), Mapping):
            continue
        label = f"{MCQ_FILE}: {_item_label(row, index)}"
        letters = tuple(sorted(row["options"]))
        if letters != MCQ_LETTERS:
            problems.append(f"{label}: field 'options' has keys {list(letters)}, expected {list(MCQ_LETTERS)}")
        elif not all(isinstance(text, str) for text in row["options"].values()):
            problems.append(f"{label}: field 'options' must map each letter to a string")
        if row.get("correct_option") not in row["options"]:
            problems.append(f"{label}: field 'correct_option' is {row.get('correct_option')!r}, not one of its options")
    return problems


def _check_agreement(gen_rows: list[Any], mcq_rows: list[Any]) -> list[str]:
    gen_by_id = {row["question_id"]: row for row in gen_rows if _has(row, "question_id", int)}
    mcq_by_id = {row["question_id"]: row for row in mcq_rows if _has(row, "question_id", int)}
    problems = [
        f"{name}: item {qid} has no counterpart in {other}"
        for name, other, ours, theirs in (
            (GEN_FILE, MCQ_FILE, gen_by_id, mcq_by_id),
            (MCQ_FILE, GEN_FILE, mcq_by_id, gen_by_id),
        )
        for qid in sorted(ours.keys() - theirs.keys())
    ]
    for qid in sorted(gen_by_id.keys() & mcq_by_id.keys()):
        for field in ("image", "category"):
            gen_value, mcq_value = gen_by_id[qid].get(field), mcq_by_id[qid].get(field)
            if field in gen_by_id[qid] and field in mcq_by_id[qid] and gen_value != mcq_value:
                problems.append(
                    f"item {qid}: field '{field}' is {gen_value!r} in {GEN_FILE} but {mcq_value!r} in {MCQ_FILE}"
                )
    return problems


def _check_images(root: Path, rows: list[Any]) -> list[str]:
    problems: list[str] = []
    for index, row in enumerate(rows):
        if not _has(row, "image", str) or not row["image"].strip():
            continue  # reported by _check_rows
        path = root / IMAGE_DIR / row["image"]
        label = f"{_item_label(row, index)}: image '{row['image']}'"
        if not path.is_file():
            problems.append(f"{label} not found at '{path}'; {WHERE_IMAGES_ARE}")
            continue
        try:
            with Image.open(path) as image:
                image.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            problems.append(f"{label} at '{path}' cannot be decoded ({exc}); replace the file")
    return problems


def _unknown_categories(rows: list[Any]) -> list[str]:
    return [
        f"{GEN_FILE}: {_item_label(row, index)}: category {row['category']!r} is not one of the 9 SIUO domains; "
        "it is scored and reported under that name"
        for index, row in enumerate(rows)
        if _has(row, "category", str) and row["category"] not in KNOWN_CATEGORIES
    ]


def _item_fields(root: Path, row: dict[str, Any]) -> dict[str, Any]:
    """What every item has: its id, image (name and path), question and category."""
    shared = {name: row[name] for name in ("question_id", "image", "question", "category")}
    return {**shared, "image_path": root / IMAGE_DIR / row["image"]}


def _gen_item(root: Path, row: dict[str, Any]) -> GenItem:
    return GenItem(
        **_item_fields(root, row), safety_warning=row["safety_warning"], reference_answer=row["reference_answer"]
    )


def _mcq_item(root: Path, row: dict[str, Any]) -> McqItem:
    options = {letter: row["options"][letter] for letter in MCQ_LETTERS}
    return McqItem(**_item_fields(root, row), options=options, correct_option=row["correct_option"])


def item_document(item: GenItem | McqItem) -> dict[str, Any]:
    """An item as a harness document: every field, the image as a path string (harnesses strip
    image columns before scoring, and the judge needs the image)."""
    return {**dataclasses.asdict(item), "image_path": str(item.image_path)}
