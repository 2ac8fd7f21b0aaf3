"""Builds SIUO-format data folders from the vendored real items, with generated images."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

DATA = Path(__file__).resolve().parent.parent / "data"


def real_items() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    gen = json.loads((DATA / "siuo_gen.json").read_text(encoding="utf-8"))
    mcq = json.loads((DATA / "siuo_mcqa.json").read_text(encoding="utf-8"))
    return gen, mcq


def per_category(items: list[dict[str, Any]], count: int) -> list[int]:
    """The first ``count`` question_ids of every category."""
    chosen: dict[str, list[int]] = {}
    for item in items:
        bucket = chosen.setdefault(item["category"], [])
        if len(bucket) < count:
            bucket.append(item["question_id"])
    return [qid for bucket in chosen.values() for qid in bucket]


def write_data_dir(target: Path, question_ids: Iterable[int] | None = None) -> Path:
    """Write siuo_gen.json, siuo_mcqa.json and one small PNG per item into ``target``."""
    gen, mcq = real_items()
    if question_ids is not None:
        keep = set(question_ids)
        gen = [item for item in gen if item["question_id"] in keep]
        mcq = [item for item in mcq if item["question_id"] in keep]
    if target.exists():
        shutil.rmtree(target)
    (target / "images").mkdir(parents=True)
    (target / "siuo_gen.json").write_text(json.dumps(gen, indent=1), encoding="utf-8")
    (target / "siuo_mcqa.json").write_text(json.dumps(mcq, indent=1), encoding="utf-8")
    for index, item in enumerate(gen):
        colour = ((37 * index) % 256, (91 * index) % 256, (53 * index) % 256)
        Image.new("RGB", (48 + index % 5, 40), colour).save(target / "images" / item["image"])
    return target
