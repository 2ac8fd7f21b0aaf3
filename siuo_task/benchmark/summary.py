"""Run summaries: the one builder every harness's task and ``siuo-eval judge`` use.

A task summary is the reductions of the per-item values (``siuo_task.benchmark.results``) plus the item
count; lmms-eval and lm-eval keep it under ``"siuo"`` in their results file, Inspect reports its
numbers as metrics, and ``siuo-eval judge`` writes it at the top of results.json with the
per-category rates, the usage block and the judge's identity added (``judge_results``). Usage
counts come from the same reductions as the top-level values (``judge_calls``,
``judge_declines``, ...), which come from each item's typed record (``siuo_task.benchmark.records``), so
results.json, its usage block and every line printed from them state one number.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siuo_task.benchmark.card import BENCHMARK_ITEMS
from siuo_task.benchmark.prompts import PROMPT_VERSION, prompt_templates_sha256
from siuo_task.benchmark.records import GenRecord, JudgeCounts, PassVerdicts, record_counts
from siuo_task.benchmark.results import GEN_REDUCERS, RECORD_KEY, USAGE_REDUCERS, Reducer, reduce_values
from siuo_task.benchmark.scoring import GEN_METRICS
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.panel import PanelConfig
from siuo_task.judge.pricing import price_table

RATE_NAMES = tuple(f"{metric}_rate" for metric in GEN_METRICS)
Values = Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """One task's reduced metrics over its items, and how many items there were."""

    metrics: dict[str, Any]
    n_items: int

    def to_dict(self) -> dict[str, Any]:
        """The summary as harnesses keep it (``"siuo": {<task>: ...}`` in their results file)."""
        return {**self.metrics, "n_items": self.n_items}


def task_summary(values: Values, reducers: Mapping[str, Reducer]) -> TaskSummary:
    """Reduce one task's per-item values (every rank's, gathered)."""
    return TaskSummary(reduce_values(values, reducers), len(values))


def item_counts(value: Mapping[str, Any]) -> JudgeCounts:
    """One item's judge counts: from its record, or from the counts a harness hook kept beside
    the values when the record travels apart (lmms-eval's and lm-eval's ``items_scored`` cell)."""
    kept = value.get("judge_outcomes")
    if isinstance(kept, Mapping):
        return JudgeCounts.from_banner(kept)
    record = value.get(RECORD_KEY)
    return record_counts(record) if isinstance(record, Mapping) else JudgeCounts()


def not_sampled_warning(name: str, metrics: Mapping[str, Any]) -> str | None:
    """The warning for a run whose responses were not sampled (identical within nearly every
    item), or None."""
    if not metrics.get("responses_not_sampled"):
        return None
    return (
        f"{name}: the responses are identical within {metrics.get('items_identical_responses')} of the items "
        "that have several: they were not sampled (greedy decoding, or a model client that ignores the "
        "temperature), so each vote counts one answer several times and this is NOT the paper's protocol "
        "(3 responses sampled at temperature 1.0)"
    )


# -- siuo-eval judge's results.json -------------------------------------------------------------


def usage_of(values: Values) -> dict[str, Any]:
    """results.json's ``usage`` block: the judge usage reductions without their ``judge_`` prefix,
    then ``declines``, the same reduction as the top-level ``judge_declines``."""
    flat = reduce_values(values, {**USAGE_REDUCERS, "judge_declines": GEN_REDUCERS["judge_declines"]})
    usage = {name.removeprefix("judge_"): flat[name] for name in USAGE_REDUCERS if name in flat}
    usage["declines"] = flat.get("judge_declines", 0)
    return usage


# results.json's stability block (``summarise_passes``), in the order it is written.
PASS_KEYS = (
    "judge_passes",
    "safe_rate_passes",
    "safety_flip_rate",
    "effectiveness_flip_rate",
    "flip_rate_responses",
    "judge_errors_passes",
    "usage_passes",
)
_SECTIONS = ("n_items", "per_category", "usage", "judge", "input", "run")


@dataclass
class JudgeResults:
    """results.json of a run judged after generation (``siuo-eval judge``, VLMEvalKit's
    ``evaluate``), typed: the task summary's reductions at top level (``metrics``: the names every
    harness's summary uses), the per-category rates, usage, the judge's identity, the stability of
    repeated passes and the run judged. ``to_dict`` writes the file's keys in their order;
    ``from_dict`` reads one back (keys written after the known ones, e.g. VLMEvalKit's task name,
    ride along in ``extra``)."""

    metrics: dict[str, Any]
    n_items: int
    per_category: dict[str, dict[str, Any]]
    usage: dict[str, Any]
    judge: dict[str, Any]
    input: str
    passes: dict[str, Any] = field(default_factory=lambda: {"judge_passes": 1})
    run: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {
            **self.metrics,
            "n_items": self.n_items,
            "per_category": self.per_category,
            "usage": self.usage,
            "judge": self.judge,
            "input": self.input,
            **self.passes,
        }
        if self.run is not None:
            data["run"] = self.run
        return {**data, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JudgeResults:
        keys = list(data)
        # Keys written after the input (VLMEvalKit adds its task there) are not the summary's.
        after = keys.index("input") + 1 if "input" in data else len(keys)
        known = {*_SECTIONS, *PASS_KEYS}
        return cls(
            metrics={key: data[key] for key in keys[:after] if key not in known},
            n_items=int(data.get("n_items") or 0),
            per_category=dict(data.get("per_category") or {}),
            usage=dict(data.get("usage") or {}),
            judge=dict(data.get("judge") or {}),
            input=str(data.get("input") or ""),
            passes={key: data[key] for key in PASS_KEYS if key in data} or {"judge_passes": 1},
            run=data.get("run"),
            extra={key: data[key] for key in keys[after:] if key not in known},
        )

    def rate(self, metric: str) -> Any:
        """A headline rate (percent), e.g. ``safe_rate``; None when no item decided it."""
        return self.metrics.get(metric)

    def ci95(self, metric: str) -> list[Any]:
        """The rate's 95% interval as [low, high] ([None, None] without one)."""
        return list(self.metrics.get(f"{metric}_ci95") or [None, None])

    @property
    def judge_errors(self) -> int:
        """Pass 1's judge errors (the headline's)."""
        return int(self.metrics.get("judge_errors") or 0)

    @property
    def errors_per_pass(self) -> list[int]:
        """Each pass's judge errors (pass 1 alone without ``--judge-passes``)."""
        return [int(n or 0) for n in self.passes.get("judge_errors_passes") or [self.judge_errors]]

    @property
    def judge_passes(self) -> int:
        return int(self.passes.get("judge_passes") or 1)

    @property
    def panel(self) -> dict[str, Any] | None:
        """``judge_panel``: each judge of a panel alone and their agreement (None for one judge)."""
        return self.metrics.get("judge_panel") or None

    @property
    def complete(self) -> bool:
        """Every item of the benchmark (the eval card's count) answered and judged with no judge
        error in any pass: a run of some items, or one with a judge error, is not comparable
        with a full run."""
        return self.n_items == BENCHMARK_ITEMS and not any(self.errors_per_pass)


def judge_results(values: Values, config: JudgeConfig | PanelConfig, source: Path) -> JudgeResults:
    """results.json: the task summary at top level (the names lmms-eval's summary uses), plus
    per-category rates, usage, the judge and the input."""
    summary = task_summary(values, GEN_REDUCERS)
    by_category: dict[str, list[Mapping[str, Any]]] = {}
    for value in values:  # each item's record read once
        by_category.setdefault(_record(value).category, []).append(value)
    per_category = {
        category: {**reduce_values(subset, {n: GEN_REDUCERS[n] for n in RATE_NAMES}), "n": len(subset)}
        for category, subset in sorted(by_category.items())
    }
    usage = usage_of(values)
    usage["price_table_as_of"] = price_table()["as_of"]
    return JudgeResults(
        metrics=summary.metrics,
        n_items=summary.n_items,
        per_category=per_category,
        usage=usage,
        judge={
            "model_requested": config.model,
            "models_returned": summary.metrics.get("judge_model", ""),
            "endpoint": config.endpoint,
            "prompt_sha256": prompt_templates_sha256(),
            "prompt_version": PROMPT_VERSION,
            "temperature": config.temperature,
            "max_tokens": config.max_tokens,
            # A panel (SIUO_JUDGE_PANEL): its file and judges; each judge's numbers are judge_panel's.
            **({"panel": config.source, "judges": list(config.labels)} if isinstance(config, PanelConfig) else {}),
        },
        input=str(source),
    )


def _record(value: Mapping[str, Any]) -> GenRecord:
    return GenRecord.from_dict(value[RECORD_KEY])


# -- judge stability: the same requests asked several times (``--judge-passes``) ------------------

FLIP_KINDS = ("safety", "effectiveness")


def summarise_passes(pass_values: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """What K passes over the same requests add to results.json; pass 1 stays the headline.

    Args:
        pass_values: per pass (pass 1 first), the per-item values, items in the same order in
            every pass.

    Returns:
        ``judge_passes``; with more than one pass also ``safe_rate_passes`` (the Safe rate of
        each pass alone), ``<kind>_flip_rate`` (percent of the responses with a verdict in every
        pass whose verdicts were not all the same; effectiveness compares the judge's label,
        e.g. "partially effective" against "very effective" is a flip), ``flip_rate_responses``
        (per kind: responses compared, flipped, and left out for a judge error in some pass),
        ``judge_errors_passes`` and ``usage_passes`` (calls, cache hits, coalesced, tokens, cost,
        declines per pass).
    """
    summary: dict[str, Any] = {"judge_passes": len(pass_values)}
    if len(pass_values) < 2:
        return summary
    safe = {"safe_rate": GEN_REDUCERS["safe_rate"]}
    summary["safe_rate_passes"] = [reduce_values(values, safe).get("safe_rate") for values in pass_values]
    counts = _flip_counts(pass_values)
    for kind, (compared, flipped, _) in counts.items():
        summary[f"{kind}_flip_rate"] = round(100 * flipped / compared, 2) if compared else None
    summary["flip_rate_responses"] = {
        kind: {"compared": compared, "flipped": flipped, "left_out_judge_error": left_out}
        for kind, (compared, flipped, left_out) in counts.items()
    }
    errors = {"judge_errors": GEN_REDUCERS["judge_errors"]}
    summary["judge_errors_passes"] = [reduce_values(values, errors).get("judge_errors", 0) for values in pass_values]
    summary["usage_passes"] = [_pass_usage(values) for values in pass_values]
    return summary


def _flip_counts(pass_values: list[list[dict[str, Any]]]) -> dict[str, tuple[int, int, int]]:
    """Per kind (compared, flipped, left out): a response without a judge call (empty, trace
    only) is not a judging and counts nowhere."""
    counts = {kind: [0, 0, 0] for kind in FLIP_KINDS}
    for items in zip(*pass_values, strict=True):
        records = [_record(item).responses for item in items]
        for responses in zip(*records, strict=True):
            for kind in FLIP_KINDS:
                outcomes = [response.outcome(kind) for response in responses]
                if any(outcome is None for outcome in outcomes):
                    continue
                verdicts = [outcome.verdict for outcome in outcomes if outcome is not None]
                if any(verdict is None for verdict in verdicts):
                    counts[kind][2] += 1
                    continue
                counts[kind][0] += 1
                counts[kind][1] += int(len({json.dumps(verdict) for verdict in verdicts}) > 1)
    return {kind: (c[0], c[1], c[2]) for kind, c in counts.items()}


def _pass_usage(values: list[dict[str, Any]]) -> dict[str, Any]:
    flat = reduce_values(values, {**USAGE_REDUCERS, "judge_declines": GEN_REDUCERS["judge_declines"]})
    usage = {name.removeprefix("judge_"): flat.get(name) for name in USAGE_REDUCERS}
    usage["declines"] = flat.get("judge_declines", 0)
    return usage


def total_usage(pass_values: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """The usage of every pass together (calls, cache hits, tokens, cost, wall time, declines),
    the names of results.json's ``usage`` section."""
    return usage_of([value for values in pass_values for value in values])


def record_passes(pass_values: list[list[dict[str, Any]]]) -> None:
    """Add each response's verdicts in every pass (pass 1 first) to pass 1's records, as
    ``verdicts_per_pass``: [{"safety", "effectiveness", "error"}], so a flip can be looked up."""
    if len(pass_values) < 2:
        return
    for items in zip(*pass_values, strict=True):
        records = [_record(item) for item in items]
        per_response = zip(*(record.responses for record in records), strict=True)
        responses = tuple(same[0].with_passes(tuple(PassVerdicts.of(r) for r in same)) for same in per_response)
        items[0][RECORD_KEY] = records[0].with_responses(responses).to_dict()
