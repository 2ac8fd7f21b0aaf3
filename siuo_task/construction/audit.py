"""``siuo-eval audit``: is every SIUO input safe on its own?

The paper audits that each item's text alone and image alone are safe, reporting automated
pass rates of 94.76% (GPT) and 95.96% (Gemini). For each item here:
- text check: a text-only model answers the question without the image, then each audit model
  judges question plus answer for safety (as in construction stage 3);
- image check: each audit model judges the image alone for safety.
An item passes a check when judged safe, and passes the audit when both checks pass. A judge
that fails, refuses or replies malformed (after retries) gives no verdict: counted as an error
and left out of the rates, never as a pass or a fail.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siuo_task.benchmark.data import GenItem, SiuoData
from siuo_task.benchmark.metrics import Rate, rate
from siuo_task.construction import prompts
from siuo_task.construction.calls import StageCall, StageCaller
from siuo_task.construction.files import dump_json, write_text_atomic
from siuo_task.construction.replies import check_safety
from siuo_task.errors import DataError
from siuo_task.judge.config import JudgeConfig
from siuo_task.report.render import Section, Table, fmt_rate, render_html, render_markdown

CHECKS = ("text", "image", "both")
PAPER_PASS_RATES = {"GPT (paper)": 94.76, "Gemini (paper)": 95.96}
AUDIT_FILES = ("audit.json", "audit.md", "audit.html")
DEFAULT_STAGE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class AuditSettings:
    judges: tuple[str, ...]
    answerer: str
    endpoint: str
    stage_attempts: int = DEFAULT_STAGE_ATTEMPTS


def _verdict(call: StageCall) -> tuple[bool | None, str]:
    """(safe, reason); None when the judge gave no verdict (error or refusal)."""
    if call.value is None:
        return None, "judge error: " + "; ".join(call.errors)
    if call.value.get("refused"):
        return None, "judge refused: " + str(call.value.get("text", ""))
    return bool(call.value["safe"]), str(call.value["reason"])


def audit_item(item: GenItem, settings: AuditSettings, caller: StageCaller) -> dict[str, Any]:
    """Both checks of one item by every audit model."""
    answer = caller.call(settings.answerer, "text_answer", prompts.text_answer_prompt(item.question), None, None)
    record: dict[str, Any] = {"question_id": item.question_id, "category": item.category, "text_answer": answer.value}
    for model in settings.judges:
        if answer.value is None:
            text: tuple[bool | None, str] = (None, "text-only answer failed: " + "; ".join(answer.errors))
        else:
            prompt = prompts.text_judge_prompt(item.question, str(answer.value))
            text = _verdict(caller.call(model, "text_judge", prompt, None, check_safety))
        image = _verdict(caller.call(model, "image_judge", prompts.image_judge_prompt(), item.image_path, check_safety))
        both = None if None in (text[0], image[0]) else bool(text[0] and image[0])
        record[model] = {"text": text[0], "text_reason": text[1], "image": image[0], "image_reason": image[1]}
        record[model]["both"] = both
    return record


def run_audit(
    data: SiuoData,
    base: JudgeConfig,
    settings: AuditSettings,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Audit every item of ``data``; the audit.json content."""
    caller = StageCaller(
        base, (*settings.judges, settings.answerer), prompts.AUDIT_PROMPT_VERSION, settings.stage_attempts
    )
    try:
        with ThreadPoolExecutor(max_workers=max(1, base.concurrency), thread_name_prefix="siuo-audit") as pool:
            futures = [pool.submit(audit_item, item, settings, caller) for item in data.gen]
            records = []
            for future in futures:
                records.append(future.result())
                if on_done is not None:
                    on_done(records[-1])
    finally:
        caller.close()
    return summarise(records, data, settings, caller.usage.to_dict())


def _rates(records: Sequence[dict[str, Any]], model: str) -> dict[str, Rate]:
    return {check: rate(record[model][check] for record in records) for check in CHECKS}


def summarise(
    records: list[dict[str, Any]], data: SiuoData, settings: AuditSettings, usage: dict[str, Any]
) -> dict[str, Any]:
    categories = sorted({record["category"] for record in records})
    per_model = {}
    for model in settings.judges:
        overall = _rates(records, model)
        per_category = {
            category: {
                k: v.to_dict() for k, v in _rates([r for r in records if r["category"] == category], model).items()
            }
            for category in categories
        }
        errors = sum((r[model]["text"] is None) + (r[model]["image"] is None) for r in records)
        per_model[model] = {
            **{check: value.to_dict() for check, value in overall.items()},
            "per_category": per_category,
            "judge_errors": errors,
        }
    return {
        "data_dir": str(data.root),
        "n_items": len(records),
        "settings": {
            "judges": list(settings.judges),
            "text_answer_model": settings.answerer,
            "endpoint": settings.endpoint,
            "prompt_version": prompts.AUDIT_PROMPT_VERSION,
            "prompts_sha256": prompts.build_prompts_sha256(),
        },
        "per_model": per_model,
        "failing": failing_items(records, settings.judges),
        "paper_pass_rates": PAPER_PASS_RATES,
        "usage": usage,
        "items": records,
    }


def failing_items(records: Sequence[dict[str, Any]], judges: Sequence[str]) -> list[dict[str, Any]]:
    """Every (item, model, check) judged unsafe or without a verdict, with the reason."""
    rows = []
    for record in records:
        for model in judges:
            for check in ("text", "image"):
                verdict = record[model][check]
                if verdict is not True:
                    rows.append(
                        {
                            "question_id": record["question_id"],
                            "category": record["category"],
                            "model": model,
                            "check": check,
                            "result": "unsafe" if verdict is False else "no verdict",
                            "reason": record[model][f"{check}_reason"],
                        }
                    )
    return rows


def _cell(value: dict[str, Any]) -> str:
    return fmt_rate(value["percent"], value["ci95"])


def sections(summary: dict[str, Any]) -> list[Section]:
    """The audit's sections, rendered as `siuo-eval report`'s are."""
    models = summary["per_model"]
    rows = [[m, *(_cell(v[c]) for c in CHECKS), str(v["judge_errors"])] for m, v in models.items()]
    rows += [[name, "—", "—", f"{value:.2f}", "—"] for name, value in PAPER_PASS_RATES.items()]
    headline = Table(["Model", "Text alone safe", "Image alone safe", "Both (audit pass)", "Judge errors"], rows)
    found = [
        Section(
            "Audit pass rates",
            "Percentages of items judged safe, with 95% Wilson intervals. The paper's rows are its reported "
            "automated audit pass rates (GPT, Gemini) on its 269 items; they are not recomputed here.",
            headline,
            css_class="",
        )
    ]
    categories = sorted({c for v in models.values() for c in v["per_category"]})
    for model, value in models.items():
        rows = [[c, *(_cell(value["per_category"][c][k]) for k in CHECKS)] for c in categories]
        table = Table(["Category", "Text", "Image", "Both"], rows)
        found.append(Section(f"By category: {model}", "", table, css_class=""))
    failing = [
        [str(f["question_id"]), f["category"], f["model"], f["check"], f["result"], f["reason"]]
        for f in summary["failing"]
    ]
    columns = ["Item", "Category", "Model", "Check", "Result", "Reason"]
    text = f"{len(failing)} check(s) not passed."
    found.append(Section("Failing items", text, Table(columns, failing), css_class=""))
    return found


HEADING = "SIUO input-safety audit"
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
)


def audit_markdown(summary: dict[str, Any]) -> str:
    settings = summary["settings"]
    intro = (
        f"{summary['n_items']} items from `{summary['data_dir']}`; text-only answers by "
        f"`{settings['text_answer_model']}`; prompts `{settings['prompt_version']}`."
    )
    return render_markdown(HEADING, sections(summary), intro)


def audit_html(summary: dict[str, Any]) -> str:
    intro = f"<p>{summary['n_items']} items</p>"
    return render_html("SIUO audit", HEADING, sections(summary), _STYLE, intro_html=intro)


def check_audit_output(output: Path, force: bool) -> list[Path]:
    """The audit's file paths; refuses (before any call is made) to replace an earlier audit.

    Raises:
        DataError: an earlier audit is there and ``force`` is off.
    """
    paths = [output / name for name in AUDIT_FILES]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise DataError(f"{', '.join(existing)} already exist(s); pass --force to replace, or choose a new --output")
    return paths


def write_audit(summary: dict[str, Any], output: Path, force: bool = False) -> list[Path]:
    """audit.json, audit.md, audit.html in ``output``; existing ones only with ``force``.

    Raises:
        DataError: an earlier audit is there and ``force`` is off.
    """
    paths = check_audit_output(output, force)
    write_text_atomic(paths[0], dump_json(summary))
    write_text_atomic(paths[1], audit_markdown(summary))
    write_text_atomic(paths[2], audit_html(summary))
    return paths
