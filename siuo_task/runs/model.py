"""A finished run as every command sees it, whichever harness wrote it.

A run is one model's evaluation under one protocol: its open-ended part, its multiple-choice
part and its circular multiple-choice part, any of which may be absent. Each part gives its
headline metrics (from the results file), the files it was read from and, when the samples
were logged, the per-item records that paired comparisons, per-category intervals and item
views need. Readers (``siuo_task.runs.readers``) build runs; reports and reviews read them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from siuo_task.benchmark.card import BENCHMARK_ITEMS, CARD, CIRCULAR_TASK, GEN_TASKS, run_name
from siuo_task.benchmark.records import CircularRecord, GenRecord, McqRecord, item_record
from siuo_task.benchmark.results import describe_protocol, not_sampled


@dataclass
class TaskRun:
    """One task's metrics (names without a harness's ',none' suffix) and per-item records.

    ``records`` are the record objects as read; commands read them typed, through
    ``item_records`` (any task) or ``gen_records`` (the open-ended part's)."""

    task: str  # the eval-card task name
    metrics: dict[str, Any]
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    samples_file: Path | None = None  # where the per-item records were (or would have been) read
    items: int | None = None  # items scored, as the harness recorded it

    @cached_property
    def item_records(self) -> dict[int, GenRecord | McqRecord | CircularRecord]:
        """The per-item records, typed, by item id."""
        return {qid: item_record(record) for qid, record in self.records.items()}

    @property
    def gen_records(self) -> dict[int, GenRecord]:
        """The judged open-ended records, by item id (none for a multiple-choice part)."""
        return {qid: record for qid, record in self.item_records.items() if isinstance(record, GenRecord)}

    @property
    def item_count(self) -> int | None:
        return self.items if self.items is not None else (len(self.records) or None)

    @property
    def partial(self) -> bool:
        count = self.item_count
        return count is not None and count < BENCHMARK_ITEMS


@dataclass
class Run:
    """One model's evaluation under one protocol, as read from a harness's files.

    ``name`` follows the one naming rule (``siuo_task.benchmark.card.run_name``): the model as the harness
    recorded it plus the suffix of a one-response or circular variant; ``suffix`` overrides the
    card's suffix where a harness names its variant itself (VLMEvalKit's ``-GEN1``).
    """

    source: Path
    gen: TaskRun | None
    mcq: TaskRun | None
    harness: str = ""
    model: str = ""  # the model as the harness's own metadata names it
    judge_meta: dict[str, Any] = field(default_factory=dict)
    circular: TaskRun | None = None
    suffix: str | None = None
    name: str = ""
    model_detail: str = ""  # how the harness described the model (class, arguments), for tables
    # The harness's own stamp of the run (ISO 8601 text from its file name or log), which orders
    # reruns; None where the harness records none.
    stamp: str | None = None
    settings: str = ""  # the model's recorded settings: runs that differ here are not reruns
    judged_from: Path | None = None  # the responses a ``siuo-eval judge`` run judged
    joined: list[Path] = field(default_factory=list)  # results of a judging joined into this run

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.default_name()

    def default_name(self) -> str:
        if self.suffix is not None:
            return self.model + self.suffix
        lead = self.gen or self.mcq or self.circular
        return run_name(self.model, lead.task) if lead and lead.task in CARD.tasks else self.model

    def tasks(self) -> list[TaskRun]:
        return [task for task in (self.gen, self.mcq, self.circular) if task is not None]

    @property
    def partial(self) -> bool:
        return any(task.partial for task in self.tasks())

    @property
    def responses_per_item(self) -> int | None:
        """The open-ended part's usual number of responses per item (None without one)."""
        if self.gen is None:
            return None
        counts = responses_per_item(self)
        if counts:
            return Counter(counts.values()).most_common(1)[0][0]
        card = CARD.tasks.get(self.gen.task)
        return card.responses_per_item if card else None

    @property
    def one_response(self) -> bool:
        """An open-ended part with one response per item: not the paper's 3-response vote."""
        return self.responses_per_item == 1

    @property
    def not_sampled(self) -> bool:
        """An open-ended part whose responses are identical within (nearly) every item that has
        several: one answer counted several times, not the paper's sampled vote."""
        if self.gen is None:
            return False
        compared = [record.identical_responses() for record in self.gen.gen_records.values()]
        cells = [{"identical": identical} for identical in compared if identical is not None]
        if not cells:
            return bool(self.gen.metrics.get("responses_not_sampled"))
        return not_sampled(cells)

    def files_read(self) -> list[Path]:
        samples = [t.samples_file for t in self.tasks() if t.samples_file is not None and t.records]
        return [self.source, *self.joined, *[s for s in samples if s != self.source]]


@dataclass(frozen=True, slots=True)
class JudgeInfo:
    """Who judged a run and under which protocol: the one place reports read this from."""

    model: str
    endpoint: str
    prompt_sha256: str
    protocol: str
    cost_usd: float | None
    errors: Any


def judge_info(run: Run) -> JudgeInfo | None:
    """Judge identity and protocol of a run's open-ended part, from its task summary (the same
    names in every harness's summary and in ``siuo-eval judge``'s results.json, all built by
    ``siuo_task.benchmark.summary``); the protocol line is built once per run from the per-item records
    when they were logged."""
    if run.gen is None:
        return None
    metrics = run.gen.metrics
    model = metrics.get("judge_model") or metrics.get("judge_model_requested") or ""
    return JudgeInfo(
        model=str(model or "unknown"),
        endpoint=str(metrics.get("judge_endpoint") or "unknown"),
        prompt_sha256=str(metrics.get("judge_prompt_sha256") or ""),
        protocol=run_protocol(run),
        cost_usd=metrics.get("judge_cost_usd"),
        errors=metrics.get("judge_errors", "unknown"),
    )


def responses_per_item(run: Run) -> dict[int, int]:
    """How many responses each logged item has (empty without per-item records)."""
    if run.gen is None:
        return {}
    return {qid: len(record.responses) for qid, record in run.gen.gen_records.items()}


def run_protocol(run: Run) -> str:
    if run.gen is None:
        return ""
    recorded = run.gen.metrics.get("protocol")
    counts = responses_per_item(run)
    if not counts:
        return str(recorded or "unknown (no per-item records)")
    version = _prompt_version(recorded)
    return f"{run.gen.task}: {describe_protocol(version, counts)}"


def _prompt_version(recorded: Any) -> str:
    """The prompt version(s) of a recorded protocol line: what describe_protocol put before its
    first ';' (every summary writes the line the same way)."""
    head = recorded.split(";", 1)[0].strip() if isinstance(recorded, str) and ";" in recorded else ""
    return head or "unknown prompts"


def minority_response_counts(run: Run) -> dict[int, list[int]]:
    """Items whose response count differs from the run's most common one: {count: [items]}."""
    counts = responses_per_item(run)
    if len(set(counts.values())) < 2:
        return {}
    usual = Counter(counts.values()).most_common(1)[0][0]
    odd: dict[int, list[int]] = {}
    for qid, count in sorted(counts.items()):
        if count != usual:
            odd.setdefault(count, []).append(qid)
    return odd


def gen_task_of(task: str, records: Mapping[int, Mapping[str, Any]]) -> str:
    """The open-ended task a run without a recorded task name ran: by its responses per item."""
    if task in GEN_TASKS:
        return task
    counts = {len(GenRecord.from_dict(record).responses) for record in records.values()}
    return "siuo_gen_greedy" if counts == {1} else "siuo_gen"


__all__ = ["CIRCULAR_TASK", "JudgeInfo", "Run", "TaskRun", "judge_info", "minority_response_counts"]
