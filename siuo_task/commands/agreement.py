"""Judge against judge: ``siuo-eval agreement RUN_A RUN_B`` compares two judgings of the same responses.

Typical use: the same responses judged by a paid judge and by a local open-weight one, to decide
whether the local judge can stand in for the paid one. Either run may be any harness's judged
run (read through the registered readers, ``siuo_task.runs``) or a ``siuo-eval judge`` output.

Responses are matched by item and response text. An item or a response found in one run and not
in the other is an error that names them: two judgings of different responses are not a
judge-against-judge comparison, and an agreement over the common part alone would read as one.
Per verdict kind (safety: safe or not; effectiveness: effective or not, the paper's reading of
the three labels) the comparison gives the responses compared, percent agreement, Cohen's kappa
with its 95% interval and the confusion matrix, overall and per category, and lists the
responses the judges disagree on. A response with a judge error on either side is left out and
counted; so is one with no judge call on a side (an empty or trace-only response).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from siuo_task.benchmark.parsing import is_effective
from siuo_task.benchmark.records import GenRecord, ResponseRecord
from siuo_task.benchmark.stats import agreement_of_pairs
from siuo_task.errors import DataError
from siuo_task.runs import Run, judge_info

SHOWN_MISMATCHES = 10


def _safe(verdict: Any) -> bool | None:
    return verdict if isinstance(verdict, bool) else None


def _effective(verdict: Any) -> bool | None:
    return is_effective(verdict) if isinstance(verdict, str) else None


# kind -> how its verdict reads as a yes/no
KINDS: dict[str, Callable[[Any], bool | None]] = {"safety": _safe, "effectiveness": _effective}


@dataclass(frozen=True, slots=True)
class MatchedResponse:
    """One response as both runs hold it: its place in run A and each run's record of it."""

    question_id: int
    category: str
    index: int
    response: str
    a: ResponseRecord
    b: ResponseRecord


def _records(run: Run) -> dict[int, GenRecord]:
    if run.gen is None or not run.gen.gen_records:
        raise DataError(
            f"'{run.source}' has no per-item judge records of a siuo_gen run (the verdicts of each response); "
            "pass a judged siuo_gen / siuo_gen_greedy run with its samples (lmms-eval: --log_samples), or a "
            "siuo-eval judge output folder"
        )
    return run.gen.gen_records


def _listed(values: list[str]) -> str:
    shown = "; ".join(values[:SHOWN_MISMATCHES])
    more = len(values) - SHOWN_MISMATCHES
    return shown + (f"; and {more} more" if more > 0 else "")


def match_responses(run_a: Run, run_b: Run) -> list[MatchedResponse]:
    """Every response of run A paired with the same response (item and text) in run B.

    Raises:
        DataError: naming the items and responses found in one run and not the other.
    """
    records_a, records_b = _records(run_a), _records(run_b)
    problems = [f"item {qid} is only in A" for qid in sorted(set(records_a) - set(records_b))]
    problems += [f"item {qid} is only in B" for qid in sorted(set(records_b) - set(records_a))]
    matched: list[MatchedResponse] = []
    for qid in sorted(set(records_a) & set(records_b)):
        remaining = list(enumerate(records_b[qid].responses))
        for index, response in enumerate(records_a[qid].responses):
            text = response.response
            found = next((pos for pos, (_, other) in enumerate(remaining) if other.response == text), None)
            if found is None:
                problems.append(f"item {qid} response {index} {text[:60]!r} is only in A")
                continue
            _, other = remaining.pop(found)
            matched.append(MatchedResponse(qid, records_a[qid].category, index, text, response, other))
        for index, other in remaining:
            problems.append(f"item {qid} response {index} {other.response[:60]!r} is only in B")
    if problems:
        raise DataError(
            f"A ('{run_a.source}') and B ('{run_b.source}') do not hold the same responses, so they are not two "
            f"judgings of one set: {_listed(problems)}. Judge the same responses with both judges (siuo-eval judge "
            "INPUT --output DIR, once per judge) and compare those"
        )
    return matched


def _stats(pairs: list[tuple[bool, bool]], errors: int, not_judged: int) -> dict[str, Any]:
    return {
        **agreement_of_pairs(pairs, "a", "b", "agreement"),
        "left_out_judge_error": errors,
        "left_out_not_judged": not_judged,
    }


def _compare_kind(matched: list[MatchedResponse], kind: str) -> dict[str, Any]:
    reading = KINDS[kind]
    by_category: dict[str, list[tuple[bool, bool]]] = {}
    left_out: dict[str, list[int]] = {}
    pairs: list[tuple[bool, bool]] = []
    disagreements = []
    for response in matched:
        outcome_a, outcome_b = response.a.outcome(kind), response.b.outcome(kind)
        counts = left_out.setdefault(response.category, [0, 0])
        by_category.setdefault(response.category, [])
        if outcome_a is None or outcome_b is None:
            counts[1] += 1
            continue
        value_a, value_b = reading(outcome_a.verdict), reading(outcome_b.verdict)
        if value_a is None or value_b is None:
            counts[0] += 1
            continue
        pairs.append((value_a, value_b))
        by_category[response.category].append((value_a, value_b))
        if value_a != value_b:
            disagreements.append(
                {
                    "question_id": response.question_id,
                    "category": response.category,
                    "response_index": response.index,
                    "response": response.response,
                    "verdict_a": outcome_a.verdict,
                    "verdict_b": outcome_b.verdict,
                }
            )
    total_errors = sum(counts[0] for counts in left_out.values())
    total_not_judged = sum(counts[1] for counts in left_out.values())
    return {
        **_stats(pairs, total_errors, total_not_judged),
        "true_means": "safe" if kind == "safety" else "effective (very or partially effective)",
        "per_category": {
            category: _stats(by_category[category], *left_out[category]) for category in sorted(by_category)
        },
        "disagreements": disagreements,
    }


def _describe(run: Run) -> dict[str, Any]:
    info = judge_info(run)
    return {
        "name": run.name,
        "harness": run.harness,
        "source": str(run.source),
        "files_read": [str(path) for path in run.files_read()],
        "judge_model": info.model if info else None,
        "judge_endpoint": info.endpoint if info else None,
    }


def compare_judgings(run_a: Run, run_b: Run) -> dict[str, Any]:
    """The agreement of two judgings of the same responses (see the module's docstring)."""
    matched = match_responses(run_a, run_b)
    return {
        "run_a": _describe(run_a),
        "run_b": _describe(run_b),
        "responses_matched": len(matched),
        **{kind: _compare_kind(matched, kind) for kind in KINDS},
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    """A short human summary of ``compare_judgings``' result."""
    a, b = result["run_a"], result["run_b"]
    lines = [
        f"A: {a['name']} (judge {a['judge_model']}); B: {b['name']} (judge {b['judge_model']}); "
        f"{result['responses_matched']} response(s) matched"
    ]
    for kind in KINDS:
        stats = result[kind]
        lines.append(
            f"{kind}: n={stats['n']} agreement={stats['agreement']}% kappa={stats['kappa']} "
            f"95% CI={stats['kappa_ci95']} confusion={stats['confusion']} (left out: judge errors "
            f"{stats['left_out_judge_error']}, not judged {stats['left_out_not_judged']}); "
            f"{len(stats['disagreements'])} disagreement(s)"
        )
        for category, part in stats["per_category"].items():
            lines.append(f"  {category}: n={part['n']} agreement={part['agreement']}% kappa={part['kappa']}")
    return lines
