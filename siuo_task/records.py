"""The per-item records every harness logs and every command reads, as types.

A judged open-ended item is kept as one JSON object (under ``"siuo"`` in a samples line, in
``siuo-eval judge``'s samples.jsonl, in Inspect's per-item values): its responses, each with its
verdicts and the judge outcomes behind them, and the item's vote. ``GenRecord`` and
``ResponseRecord`` are that object typed; ``from_dict`` reads it and ``to_dict`` writes it back
key for key, so files keep their shape. Records written before a field existed read with that
field's default; keys this version does not know ride along unchanged.

Every count a run reports (judge requests, HTTP calls, errors, declines, trace judgings) is
taken from ``GenRecord.outcomes()``: the judge outcomes in the order the requests were made
(per response: its answer's safety and effectiveness, then its trace's safety), so no reader
counts them its own way.

Multiple-choice records (``McqRecord``, ``CircularRecord``) are typed too, for the readers that
compare items across runs; each record answers ``decision(metric)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from siuo_task.judge.request import JudgeOutcome

# The outcome fields of a response record, in request order (scoring.gen_judge_requests).
OUTCOME_FIELDS = ("safety_judge", "effectiveness_judge", "trace_safety_judge")

Extra = tuple[tuple[str, Any], ...]


def outcome_from_dict(data: Mapping[str, Any] | None) -> JudgeOutcome | None:
    """A judge outcome as a record holds it (``JudgeOutcome.to_dict``); None for none (an empty
    or trace-only response, or a trace that was not judged)."""
    return JudgeOutcome.from_dict(data) if data else None


def _outcome_dict(outcome: JudgeOutcome | None) -> dict[str, Any] | None:
    return outcome.to_dict() if outcome is not None else None


def _extra(data: Mapping[str, Any], known: frozenset[str]) -> Extra:
    return tuple((key, value) for key, value in data.items() if key not in known)


@dataclass(frozen=True, slots=True)
class PassVerdicts:
    """One response's verdicts in one judge pass (``--judge-passes``): what a flip is read from."""

    safety: bool | str | None
    effectiveness: bool | str | None
    error: str | None

    @classmethod
    def of(cls, response: ResponseRecord) -> PassVerdicts:
        outcomes = {"safety": response.safety_judge, "effectiveness": response.effectiveness_judge}
        errors = [f"{kind}: {o.error}" for kind, o in outcomes.items() if o is not None and o.error]
        return cls(
            response.safety_judge.verdict if response.safety_judge else None,
            response.effectiveness_judge.verdict if response.effectiveness_judge else None,
            "; ".join(errors) or None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"safety": self.safety, "effectiveness": self.effectiveness, "error": self.error}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PassVerdicts:
        return cls(data.get("safety"), data.get("effectiveness"), data.get("error"))


@dataclass(frozen=True, slots=True)
class ResponseRecord:
    """One response as recorded: the text, what the judge saw (``answer``), the reasoning
    trace, its verdicts and the judge outcomes behind them."""

    response: str
    answer: str
    trace: str | None
    trace_only: bool
    empty: bool
    truncated_for_judge: bool
    safe: bool | None
    effective: bool | None
    safe_effective: bool | None
    trace_safe: bool | None
    safety_judge: JudgeOutcome | None
    effectiveness_judge: JudgeOutcome | None
    trace_safety_judge: JudgeOutcome | None
    # Each pass's verdicts, pass 1 first, when the run was judged more than once.
    verdicts_per_pass: tuple[PassVerdicts, ...] | None = None
    extra: Extra = ()

    _KNOWN = frozenset(
        {
            "response",
            "answer",
            "trace",
            "trace_only",
            "empty",
            "truncated_for_judge",
            "safe",
            "effective",
            "safe_effective",
            "trace_safe",
            *OUTCOME_FIELDS,
            "verdicts_per_pass",
        }
    )

    def outcomes(self) -> list[JudgeOutcome]:
        """The judge outcomes of this response, in request order."""
        return [o for o in (self.safety_judge, self.effectiveness_judge, self.trace_safety_judge) if o is not None]

    def outcome(self, kind: str) -> JudgeOutcome | None:
        """The outcome of one verdict kind: "safety", "effectiveness" or "trace_safety"."""
        return {
            "safety": self.safety_judge,
            "effectiveness": self.effectiveness_judge,
            "trace_safety": self.trace_safety_judge,
        }[kind]

    def with_passes(self, verdicts: tuple[PassVerdicts, ...]) -> ResponseRecord:
        return dataclasses.replace(self, verdicts_per_pass=verdicts)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "response": self.response,
            "answer": self.answer,
            "trace": self.trace,
            "trace_only": self.trace_only,
            "empty": self.empty,
            "truncated_for_judge": self.truncated_for_judge,
            "safe": self.safe,
            "effective": self.effective,
            "safe_effective": self.safe_effective,
            "trace_safe": self.trace_safe,
            "safety_judge": _outcome_dict(self.safety_judge),
            "effectiveness_judge": _outcome_dict(self.effectiveness_judge),
            "trace_safety_judge": _outcome_dict(self.trace_safety_judge),
        }
        if self.verdicts_per_pass is not None:
            data["verdicts_per_pass"] = [verdicts.to_dict() for verdicts in self.verdicts_per_pass]
        data.update(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResponseRecord:
        response = str(data.get("response") or "")
        passes = data.get("verdicts_per_pass")
        safety = outcome_from_dict(data.get("safety_judge"))
        return cls(
            response=response,
            answer=str(data.get("answer", response) or ""),
            trace=data.get("trace"),
            trace_only=bool(data.get("trace_only", False)),
            # Records older than the flag: a response without a safety call was empty.
            empty=bool(data.get("empty", safety is None)),
            truncated_for_judge=bool(data.get("truncated_for_judge", False)),
            safe=data.get("safe"),
            effective=data.get("effective"),
            safe_effective=data.get("safe_effective"),
            trace_safe=data.get("trace_safe"),
            safety_judge=safety,
            effectiveness_judge=outcome_from_dict(data.get("effectiveness_judge")),
            trace_safety_judge=outcome_from_dict(data.get("trace_safety_judge")),
            verdicts_per_pass=tuple(PassVerdicts.from_dict(p) for p in passes) if isinstance(passes, list) else None,
            extra=_extra(data, cls._KNOWN),
        )


@dataclass(frozen=True, slots=True)
class JudgeCounts:
    """What an item's (or a run's) judging took: requests made, HTTP calls sent, outcomes with
    an error, refusals to grade among them, and trace judgings."""

    requests: int = 0
    calls: int = 0
    errors: int = 0
    declines: int = 0
    traces: int = 0
    first_error: str | None = None
    # A panel's judges' requests left unanswered because that judge had stopped (``stopped``
    # outcomes; not errors of the panel's votes, which the living judges may still decide).
    stopped: int = 0
    first_stopped: str | None = None

    def banner(self) -> dict[str, Any]:
        """The counts a harness hook keeps beside an item's values for the judge-error banner
        (``"calls"`` there are the requests made)."""
        kept: dict[str, Any] = {"calls": self.requests, "errors": self.errors, "first_error": self.first_error}
        if self.stopped:
            kept.update(stopped=self.stopped, first_stopped=self.first_stopped)
        return kept

    @classmethod
    def from_banner(cls, data: Mapping[str, Any]) -> JudgeCounts:
        return cls(
            requests=int(data["calls"]),
            errors=int(data["errors"]),
            first_error=data.get("first_error"),
            stopped=int(data.get("stopped") or 0),
            first_stopped=data.get("first_stopped"),
        )


def _count_outcomes(outcomes: list[JudgeOutcome], traces: int = 0) -> JudgeCounts:
    errors = [o.error for o in outcomes if o.error]
    # A panel's outcome holds its judges' (one judge's record: the outcomes themselves).
    stopped = [m.error for o in outcomes for m in (o.judges if o.judges is not None else (o,)) if m.stopped]
    return JudgeCounts(
        requests=len(outcomes),
        calls=sum(o.attempts for o in outcomes),
        errors=len(errors),
        declines=sum(1 for o in outcomes if o.declined),
        traces=traces,
        first_error=errors[0] if errors else None,
        stopped=len(stopped),
        first_stopped=stopped[0] if stopped else None,
    )


@dataclass(frozen=True, slots=True)
class GenRecord:
    """One judged open-ended item: its responses in order, and the item's vote."""

    question_id: int
    category: str
    responses: tuple[ResponseRecord, ...]
    safe: bool | None
    effective: bool | None
    safe_effective: bool | None
    missing_votes: bool
    judge_errors: int
    trace_safe: bool | None = None
    trace_only_responses: int = 0
    extra: Extra = ()

    _KNOWN = frozenset(
        {
            "question_id",
            "category",
            "responses",
            "safe",
            "effective",
            "safe_effective",
            "missing_votes",
            "judge_errors",
            "trace_safe",
            "trace_only_responses",
        }
    )

    def outcomes(self) -> list[JudgeOutcome]:
        """Every judge outcome of the item, in request order."""
        return [outcome for response in self.responses for outcome in response.outcomes()]

    def counts(self) -> JudgeCounts:
        """The item's judge requests, calls, errors, declines and trace judgings: the one count."""
        traces = sum(1 for response in self.responses if response.trace_safety_judge is not None)
        return _count_outcomes(self.outcomes(), traces)

    def decision(self, metric: str) -> bool | None:
        """The item's vote on ``safe``, ``effective``, ``safe_effective`` or ``trace_safe``."""
        return {
            "safe": self.safe,
            "effective": self.effective,
            "safe_effective": self.safe_effective,
            "trace_safe": self.trace_safe,
        }[metric]

    def identical_responses(self) -> bool | None:
        """Whether the item's several responses are all the same text (not sampled); None with
        fewer than two responses, where there is nothing to compare."""
        if len(self.responses) < 2:
            return None
        return len({response.response.strip() for response in self.responses}) == 1

    def with_responses(self, responses: tuple[ResponseRecord, ...]) -> GenRecord:
        return dataclasses.replace(self, responses=responses)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "question_id": self.question_id,
            "category": self.category,
            "responses": [response.to_dict() for response in self.responses],
            "safe": self.safe,
            "effective": self.effective,
            "safe_effective": self.safe_effective,
            "missing_votes": self.missing_votes,
            "judge_errors": self.judge_errors,
            "trace_safe": self.trace_safe,
            "trace_only_responses": self.trace_only_responses,
        }
        data.update(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenRecord:
        responses = tuple(ResponseRecord.from_dict(r) for r in data.get("responses") or [] if isinstance(r, Mapping))
        errors = data.get("judge_errors")
        if not isinstance(errors, int):
            errors = sum(1 for response in responses for outcome in response.outcomes() if outcome.error)
        return cls(
            question_id=int(data["question_id"]),
            category=str(data.get("category", "")),
            responses=responses,
            safe=data.get("safe"),
            effective=data.get("effective"),
            safe_effective=data.get("safe_effective"),
            missing_votes=bool(data.get("missing_votes", False)),
            judge_errors=errors,
            trace_safe=data.get("trace_safe"),
            trace_only_responses=int(data.get("trace_only_responses", 0) or 0),
            extra=_extra(data, cls._KNOWN),
        )


@dataclass(frozen=True, slots=True)
class McqRecord:
    """One multiple-choice answer as recorded: the letter read from the final answer and the gold."""

    question_id: int
    category: str
    response: str
    answer: str
    trace: str | None
    trace_only: bool
    parsed: str | None
    gold: str
    correct: bool
    extra: Extra = ()

    _KNOWN = frozenset(
        {"question_id", "category", "response", "answer", "trace", "trace_only", "parsed", "gold", "correct"}
    )

    def decision(self, metric: str) -> bool | None:
        """Whether the answer was right (every multiple-choice metric reads ``correct``)."""
        return self.correct

    def to_dict(self) -> dict[str, Any]:
        data = {
            "question_id": self.question_id,
            "category": self.category,
            "response": self.response,
            "answer": self.answer,
            "trace": self.trace,
            "trace_only": self.trace_only,
            "parsed": self.parsed,
            "gold": self.gold,
            "correct": self.correct,
        }
        data.update(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> McqRecord:
        response = str(data.get("response") or "")
        return cls(
            question_id=int(data["question_id"]),
            category=str(data.get("category", "")),
            response=response,
            answer=str(data.get("answer", response) or ""),
            trace=data.get("trace"),
            trace_only=bool(data.get("trace_only", False)),
            parsed=data.get("parsed"),
            gold=str(data.get("gold", "")),
            correct=bool(data.get("correct")),
            extra=_extra(data, cls._KNOWN),
        )


@dataclass(frozen=True, slots=True)
class CircularRecord:
    """One circular multiple-choice item: its four rotations' answers; correct only when all are."""

    question_id: int
    category: str
    responses: tuple[str, ...]
    parsed: tuple[str | None, ...]
    golds: tuple[str, ...]
    correct_per_rotation: tuple[bool, ...]
    correct: bool
    extra: Extra = ()

    _KNOWN = frozenset({"question_id", "category", "responses", "parsed", "golds", "correct_per_rotation", "correct"})

    def decision(self, metric: str) -> bool | None:
        return self.correct

    def to_dict(self) -> dict[str, Any]:
        data = {
            "question_id": self.question_id,
            "category": self.category,
            "responses": list(self.responses),
            "parsed": list(self.parsed),
            "golds": list(self.golds),
            "correct_per_rotation": list(self.correct_per_rotation),
            "correct": self.correct,
        }
        data.update(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CircularRecord:
        return cls(
            question_id=int(data["question_id"]),
            category=str(data.get("category", "")),
            responses=tuple(data.get("responses") or ()),
            parsed=tuple(data.get("parsed") or ()),
            golds=tuple(data.get("golds") or ()),
            correct_per_rotation=tuple(data.get("correct_per_rotation") or ()),
            correct=bool(data.get("correct")),
            extra=_extra(data, cls._KNOWN),
        )


def item_record(data: Mapping[str, Any]) -> GenRecord | McqRecord | CircularRecord:
    """The typed record of a record dict, by its shape: a circular item has per-rotation
    results, a judged open-ended item response records, a multiple-choice answer a gold."""
    if "correct_per_rotation" in data:
        return CircularRecord.from_dict(data)
    if isinstance(data.get("responses"), list):
        return GenRecord.from_dict(data)
    return McqRecord.from_dict(data)
