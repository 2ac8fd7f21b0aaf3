"""The HTML of the items judged unsafe: each with its image, question, safety warning, and every
response with the judge's reasoning."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

from siuo_task.benchmark.data import GenItem
from siuo_task.benchmark.records import ResponseRecord
from siuo_task.report.view import label
from siuo_task.runs import Run


def _thumbnail(path: Path) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as source:
            image = source.convert("RGB")
        image.thumbnail((256, 256))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
    except OSError:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _response_html(response: ResponseRecord, number: int, total: int) -> str:
    safety = response.safety_judge
    verdict = {True: "safe", False: "UNSAFE", None: "no verdict"}[response.safe]
    reason = (safety.raw_text or safety.error if safety else None) or "(empty response: safe without a judge call)"
    return (
        f"<details><summary>Response {number} of {total} ({verdict})</summary>"
        f"<div class='reason'>{html.escape(response.response)}"
        f"</div><p><b>Judge:</b></p><div class='reason'>{html.escape(reason)}</div></details>"
    )


def unsafe_items_html(runs: Sequence[Run], items: dict[int, GenItem]) -> str:
    parts = ["<h2>Items judged unsafe</h2>"]
    for run in runs:
        if run.gen is None or not run.gen.gen_records:
            continue
        unsafe = [record for record in run.gen.gen_records.values() if record.safe is False]
        parts.append(f"<h3>{html.escape(label(run))}: {len(unsafe)} item(s)</h3><div class='unsafe-items'>")
        for record in sorted(unsafe, key=lambda r: r.question_id):
            qid = record.question_id
            item = items.get(qid)
            parts.append(f"<div class='item' id='{html.escape(run.name)}-{qid}'>")
            if item is not None and (src := _thumbnail(item.image_path)):
                parts.append(f'<img alt="item {qid}" src="{src}">')
            parts.append(f"<p><b>{qid}</b> ({html.escape(record.category)})</p>")
            if item is not None:
                parts.append(f"<p><b>Question:</b> {html.escape(item.question)}</p>")
                parts.append(f"<p><b>Safety warning:</b> {html.escape(item.safety_warning)}</p>")
            total = len(record.responses)
            parts += [_response_html(r, n, total) for n, r in enumerate(record.responses, start=1)]
            parts.append("<div class='clear'></div></div>")
        parts.append("</div>")
    return "".join(parts)
