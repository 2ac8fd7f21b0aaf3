"""The report's sensitivity line for the benchmark's own reference answers: each run's open-ended
rates again with the items left out whose reference answer the safety judge grades unsafe
(``siuo-eval audit --references``, read from its audit.json). Never the headline: the
benchmark is all its items, and the judge's reading of a reference is itself a judge's."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siuo_task.benchmark.metrics import rate
from siuo_task.errors import DataError
from siuo_task.report.render import Section, Table, fmt_rate
from siuo_task.report.view import GEN_LABELS, decisions, label
from siuo_task.runs import Run

TITLE = "Sensitivity: without the items whose reference answer is graded unsafe"


@dataclass(frozen=True, slots=True)
class ReferenceAudit:
    """What the report needs of a reference check's audit.json."""

    path: Path
    checked: int
    unsafe: frozenset[int]
    no_verdict: frozenset[int]
    judge: str


def _ids(value: Any, path: Path, field: str) -> frozenset[int]:
    if not isinstance(value, list) or not all(isinstance(qid, int) and not isinstance(qid, bool) for qid in value):
        raise DataError(f"{path}: references.{field} must be a list of question ids; was the file edited?")
    return frozenset(value)


def read_reference_audit(path: Path) -> ReferenceAudit:
    """The ``references`` block of ``siuo-eval audit --references``'s audit.json.

    Raises:
        DataError: the file cannot be read, is not JSON, or holds no reference check (an input
            audit, or another file), naming the file and what to run.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"--references-audit {path}: cannot read it ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"--references-audit {path}: not a JSON file ({exc})") from None
    found = data.get("references") if isinstance(data, dict) else None
    if not isinstance(found, dict) or not isinstance(found.get("checked"), int):
        raise DataError(
            f"--references-audit {path}: no 'references' block with 'checked' in it; make one with "
            "siuo-eval audit --references --output DIR and pass DIR/audit.json"
        )
    judge = data.get("judge", {}).get("model_requested") if isinstance(data.get("judge"), dict) else None
    return ReferenceAudit(
        path=path,
        checked=found["checked"],
        unsafe=_ids(found.get("unsafe"), path, "unsafe"),
        no_verdict=_ids(found.get("no_verdict"), path, "no_verdict"),
        judge=str(judge or "unknown"),
    )


def _cell(values: Sequence[bool | None]) -> str:
    found = rate(values)
    return f"{fmt_rate(found.percent, found.ci95)} (n={found.n})"


def sensitivity_table(runs: Sequence[Run], audit: ReferenceAudit) -> Table:
    """Per run with per-item open-ended records: each rate over all its items and without the
    items whose reference the judge graded unsafe (95% Wilson intervals, decided items)."""
    headers = ["Run", "Items left out"]
    for metric_label in GEN_LABELS.values():
        headers += [f"{metric_label} (all items)", f"{metric_label} (without)"]
    rows = []
    for run in runs:
        if run.gen is None or not run.gen.records:
            continue
        left_out = sorted(set(run.gen.records) & audit.unsafe)
        row = [label(run), f"{len(left_out)} of {len(run.gen.records)}"]
        for metric in GEN_LABELS:
            every = decisions(run, metric)
            row += [_cell(list(every.values())), _cell([v for qid, v in every.items() if qid not in audit.unsafe])]
        rows.append(row)
    return Table(headers, rows)


def sensitivity_section(runs: Sequence[Run], audit: ReferenceAudit) -> Section:
    table = sensitivity_table(runs, audit)
    unsafe = ", ".join(map(str, sorted(audit.unsafe))) or "none"
    text = (
        f"A check of the benchmark, not a result: the judge ({audit.judge}, {audit.path}) graded "
        f"{len(audit.unsafe)} of the {audit.checked} reference answers unsafe (items {unsafe}); the judge prompt "
        "shows those references as the reference response. Each open-ended rate again with those items left "
        "out, beside the same rate over all items, from the per-item records. The headline stays the rate over "
        "all items."
    )
    if audit.no_verdict:
        text += f" {len(audit.no_verdict)} reference(s) got no verdict and are kept in."
    if not table.rows:
        text += " No run here has per-item open-ended records, so there is nothing to recompute."
    return Section(TITLE, text, table if table.rows else None)
