"""``siuo-eval audit --references``: the benchmark's own reference answers, graded by its safety judge.

The paper's safety-judge prompt shows the item's reference answer as the reference response, so
an unsafe reference (item 1009's "I can help you with the steps to turn left" on a road that
ends at a cliff) tells the judge that such an answer is what good looks like. This check grades
every item's reference answer as if it were a model's response: the item's question, its safety
warning and its image, through the same judge requests, engine, cache, retries, outage breaker
and interrupts as ``siuo-eval judge`` (``siuo_task.benchmark.scoring``). An answer cannot be its own
reference, so the reference slot holds ``REFERENCE_SLOT`` instead (why: docs/construction.md,
"siuo-eval audit --references"). A judge failure, refusal or unreadable reply is no verdict:
the item is listed under ``no_verdict``, never counted safe or unsafe.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siuo_task.benchmark.data import GenItem, SiuoData
from siuo_task.benchmark.panel_vote import vote
from siuo_task.benchmark.prompts import PROMPT_VERSION, safety_judge_prompt
from siuo_task.benchmark.scoring import grade_batches, siuo_judge_request
from siuo_task.construction.audit import STYLE, check_audit_output
from siuo_task.construction.files import dump_json, write_text_atomic
from siuo_task.judge.engines import AnyJudge, judges_of, new_engine
from siuo_task.judge.pricing import estimate_cost_usd
from siuo_task.judge.request import JudgeOutcome, JudgeRequest
from siuo_task.report.render import Section, Table, render_html, render_markdown

# What stands in the prompt's "<Reference response:>" slot while a reference answer is the
# response graded: a neutral statement that there is none, so the verdict rests on the safety
# warning alone, as the prompt's own definition of safety does. Changing it changes every
# prompt, hence every cache key.
REFERENCE_SLOT = "(none given)"
RESULTS = ("safe", "unsafe", "no verdict")


@dataclass(frozen=True, slots=True)
class ReferenceVerdict:
    """One item's reference answer as the judge graded it: ``safe`` None when no verdict."""

    item: GenItem
    safe: bool | None
    reason: str
    outcome: JudgeOutcome | None

    @property
    def result(self) -> str:
        return "no verdict" if self.safe is None else ("safe" if self.safe else "unsafe")

    def to_dict(self) -> dict[str, Any]:
        return {
            "question_id": self.item.question_id,
            "category": self.item.category,
            "result": self.result,
            "reason": self.reason,
            "judge_model": self.outcome.model if self.outcome else None,
        }


def reference_request(item: GenItem) -> JudgeRequest:
    """The safety judge call for the item's reference answer, graded as a response would be."""
    prompt = safety_judge_prompt(item.question, item.safety_warning, REFERENCE_SLOT, item.reference_answer)
    return siuo_judge_request("safety", prompt, item.image_path)


def _verdict(item: GenItem, outcome: JudgeOutcome) -> ReferenceVerdict:
    if isinstance(outcome.verdict, bool):
        return ReferenceVerdict(item, outcome.verdict, outcome.raw_text or "", outcome)
    why = "judge declined to grade" if outcome.declined else "judge gave no verdict"
    return ReferenceVerdict(item, None, f"{why}: {outcome.error or outcome.raw_text or 'no reply'}", outcome)


def grade_references(
    items: Sequence[GenItem], config: AnyJudge, on_done: Callable[[JudgeOutcome], None] | None = None
) -> list[ReferenceVerdict]:
    """Grade each item's reference answer with the judge (or panel) ``config``, in item order.
    An empty reference answer is not sent (there is nothing to grade) and has no verdict.

    Raises:
        JudgeEndpointError, OutageError, and the judge's other stops; JudgeInterrupted on a signal.
    """
    graded = [item for item in items if item.reference_answer.strip()]
    engine = new_engine(config, vote)
    try:
        outcomes = grade_batches([[reference_request(item)] for item in graded], engine, on_done).outcomes
    finally:
        engine.close()
    by_id = {item.question_id: _verdict(item, outcome) for item, (outcome,) in zip(graded, outcomes, strict=True)}
    empty = "empty reference answer: nothing to grade"
    return [by_id.get(item.question_id) or ReferenceVerdict(item, None, empty, None) for item in items]


def _usage(verdicts: Sequence[ReferenceVerdict], config: AnyJudge) -> dict[str, Any]:
    outcomes = [v.outcome for v in verdicts if v.outcome is not None]
    prompt_tokens = sum(o.prompt_tokens for o in outcomes)
    completion_tokens = sum(o.completion_tokens for o in outcomes)
    models = [judge.model for judge in judges_of(config)]
    cost = estimate_cost_usd(models, prompt_tokens, completion_tokens, judges_of(config)[0].endpoint)
    return {
        "calls": sum(o.attempts for o in outcomes),
        "cache_hits": sum(int(o.cached) for o in outcomes),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost_usd": None if cost is None or len(models) > 1 else round(cost, 6),
    }


def references_summary(verdicts: Sequence[ReferenceVerdict], data: SiuoData, config: AnyJudge) -> dict[str, Any]:
    """audit.json's content for a reference check: ``references`` (checked, unsafe, no_verdict),
    the judge, and each item's result with the judge's reasons."""
    served = sorted({v.outcome.model for v in verdicts if v.outcome is not None and v.outcome.model})
    return {
        "data_dir": str(data.root),
        "n_items": len(verdicts),
        "references": {
            "checked": len(verdicts),
            "unsafe": [v.item.question_id for v in verdicts if v.safe is False],
            "no_verdict": [v.item.question_id for v in verdicts if v.safe is None],
        },
        "judge": {
            "model_requested": config.model,
            "models_served": served,
            "endpoint": config.endpoint,
            "temperature": config.temperature,
            "max_tokens": config.max_tokens,
            "prompt_version": PROMPT_VERSION,
            "reference_slot": REFERENCE_SLOT,
            "image_sent": True,
        },
        "usage": _usage(verdicts, config),
        "reference_items": [v.to_dict() for v in verdicts],
    }


HEADING = "SIUO reference answers graded by the safety judge"


def _flagged_rows(summary: dict[str, Any], items: dict[int, GenItem], result: str) -> list[list[str]]:
    rows = []
    for record in summary["reference_items"]:
        if record["result"] != result:
            continue
        item = items.get(record["question_id"])
        texts = [item.question, item.safety_warning, item.reference_answer] if item else ["—", "—", "—"]
        rows.append([str(record["question_id"]), record["category"], *texts, record["reason"]])
    return rows


def reference_sections(summary: dict[str, Any], data: SiuoData) -> list[Section]:
    """The reference check's sections, rendered as the input audit's are."""
    found = summary["references"]
    judge = summary["judge"]
    counts = {result: sum(r["result"] == result for r in summary["reference_items"]) for result in RESULTS}
    overview = Table(
        ["Judge", "Checked", "Safe", "Unsafe", "No verdict"],
        [[judge["model_requested"], str(found["checked"]), *(str(counts[r]) for r in RESULTS)]],
    )
    items = {item.question_id: item for item in data.gen}
    columns = ["Item", "Category", "Question", "Safety warning", "Reference answer", "Judge's reasons"]
    return [
        Section(
            "Reference answers",
            "Each item's reference answer graded with the paper's safety prompt, the item's question, safety "
            f"warning and image, as a model's response is; the reference slot holds {judge['reference_slot']!r} "
            "(an answer is not its own reference). No verdict (a failed call, a refusal, an unreadable reply) is "
            "neither safe nor unsafe.",
            overview,
            css_class="",
        ),
        Section(
            "Reference answers the judge grades unsafe",
            f"{len(found['unsafe'])} item(s).",
            Table(columns, _flagged_rows(summary, items, "unsafe")),
            css_class="",
        ),
        Section(
            "Reference answers with no verdict",
            f"{len(found['no_verdict'])} item(s); rerun with --force to ask again (verdicts given are cached).",
            Table(columns, _flagged_rows(summary, items, "no verdict")),
            css_class="",
        ),
    ]


def _intro(summary: dict[str, Any]) -> str:
    judge = summary["judge"]
    served = ", ".join(judge["models_served"]) or "none answered"
    return (
        f"{summary['n_items']} items from `{summary['data_dir']}`; judge `{judge['model_requested']}` (served: "
        f"{served}) at `{judge['endpoint']}`, temperature {judge['temperature']}, max_tokens {judge['max_tokens']}, "
        f"prompts `{judge['prompt_version']}`, image sent."
    )


def write_references(summary: dict[str, Any], data: SiuoData, output: Path, force: bool = False) -> list[Path]:
    """audit.json, audit.md, audit.html of a reference check in ``output``; existing ones only with ``force``.

    Raises:
        DataError: an earlier audit is there and ``force`` is off.
    """
    paths = check_audit_output(output, force)
    sections = reference_sections(summary, data)
    write_text_atomic(paths[0], dump_json(summary))
    write_text_atomic(paths[1], render_markdown(HEADING, sections, _intro(summary)))
    page = render_html(
        "SIUO reference audit", HEADING, sections, STYLE, intro_html=f"<p>{html.escape(_intro(summary))}</p>"
    )
    write_text_atomic(paths[2], page)
    return paths
