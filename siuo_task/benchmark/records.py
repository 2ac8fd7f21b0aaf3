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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from siuo_task.judge.request import JudgeOutcome

# The outcome fields of a response record, in request order (scoring.gen_judge_requests).
OUTCOME_FIELDS = ("safety_judge", "effectiveness_judge", "trace_safety_judge")

Extra = tuple[tuple[str, Any], ...]
# What a record field's reader is given when its key is absent: the whole dict as written and
# the fields read so far (every present key), so a default can follow from another field.
Absent = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]
_NOT_GIVEN = object()
RecordT = TypeVar("RecordT", bound="RecordCodec")


def outcome_from_dict(data: Mapping[str, Any] | None) -> JudgeOutcome | None:
    """A judge outcome as a record holds it (``JudgeOutcome.to_dict``); None for none (an empty
    or trace-only response, or a trace that was not judged)."""
    return JudgeOutcome.from_dict(data) if data else None


def _same(value: Any) -> Any:
    return value


def _text(value: Any) -> str:
    return str(value or "")


def _none(data: Mapping[str, Any], read: Mapping[str, Any]) -> None:
    return None


def _constant(value: Any) -> Absent:
    return lambda data, read: value


def record_field(
    *,
    read: Callable[[Any], Any] = _same,
    absent: Absent | None = _none,
    omit_none: bool = False,
    default: Any = dataclasses.MISSING,
) -> Any:
    """A record field's place in the record dict: how its value is read back (``read``; it may
    answer ``_NOT_GIVEN`` for a value that counts as absent), what stands in when the key is
    absent (None: the key is required), whether a None is left out when written (a key only
    some records carry), and the constructor's default."""
    metadata = {"read": read, "absent": absent, "omit_none": omit_none}
    return dataclasses.field(default=default, metadata=metadata)


def _written(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_written(element) for element in value]
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


class RecordCodec:
    """``to_dict`` / ``from_dict`` derived from a record's dataclass fields: the one place the
    field names live, written in field order, with the keys this version does not know kept in
    ``extra`` and written back after the known ones."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for spec in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, spec.name)
            if spec.name == "extra" or (value is None and spec.metadata.get("omit_none")):
                continue
            data[spec.name] = _written(value)
        data.update(getattr(self, "extra", ()))
        return data

    @classmethod
    def from_dict(cls: type[RecordT], data: Mapping[str, Any]) -> RecordT:
        specs = [spec for spec in dataclasses.fields(cls) if spec.name != "extra"]  # type: ignore[arg-type]
        read: dict[str, Any] = {}
        for spec in specs:
            if spec.name in data:
                value = spec.metadata.get("read", _same)(data[spec.name])
                if value is not _NOT_GIVEN:
                    read[spec.name] = value
        for spec in specs:
            if spec.name not in read:
                absent = spec.metadata.get("absent", _none)
                if absent is None:
                    raise KeyError(spec.name)
                read[spec.name] = absent(data, read)
        known = {spec.name for spec in specs}
        read["extra"] = tuple((key, value) for key, value in data.items() if key not in known)
        return cls(**read)


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


def _passes(value: Any) -> Any:
    return tuple(PassVerdicts.from_dict(p) for p in value) if isinstance(value, list) else None


@dataclass(frozen=True, slots=True)
class ResponseRecord(RecordCodec):
    """One response as recorded: the text, what the judge saw (``answer``), the reasoning
    trace, its verdicts and the judge outcomes behind them."""

    response: str = record_field(read=_text, absent=_constant(""))
    answer: str = record_field(read=_text, absent=lambda data, read: read["response"])
    trace: str | None = record_field()
    trace_only: bool = record_field(read=bool, absent=_constant(False))
    # Records older than the flag: a response without a safety call was empty.
    empty: bool = record_field(read=bool, absent=lambda data, read: not data.get("safety_judge"))
    truncated_for_judge: bool = record_field(read=bool, absent=_constant(False))
    safe: bool | None = record_field()
    effective: bool | None = record_field()
    safe_effective: bool | None = record_field()
    trace_safe: bool | None = record_field()
    safety_judge: JudgeOutcome | None = record_field(read=outcome_from_dict)
    effectiveness_judge: JudgeOutcome | None = record_field(read=outcome_from_dict)
    trace_safety_judge: JudgeOutcome | None = record_field(read=outcome_from_dict)
    # Each pass's verdicts, pass 1 first, when the run was judged more than once.
    verdicts_per_pass: tuple[PassVerdicts, ...] | None = record_field(read=_passes, omit_none=True, default=None)
    extra: Extra = ()

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


def _responses(value: Any) -> tuple[ResponseRecord, ...]:
    return tuple(ResponseRecord.from_dict(r) for r in value or [] if isinstance(r, Mapping))


def _count_written(value: Any) -> Any:
    return value if isinstance(value, int) else _NOT_GIVEN


def responses_with_errors(responses: Sequence[ResponseRecord]) -> int:
    """How many of the responses' judge outcomes are errors: an item's ``judge_errors``."""
    return sum(1 for response in responses for outcome in response.outcomes() if outcome.error)


def _errors_in(data: Mapping[str, Any], read: Mapping[str, Any]) -> int:
    return responses_with_errors(read["responses"])


@dataclass(frozen=True, slots=True)
class GenRecord(RecordCodec):
    """One judged open-ended item: its responses in order, and the item's vote."""

    question_id: int = record_field(read=int, absent=None)
    category: str = record_field(read=str, absent=_constant(""))
    responses: tuple[ResponseRecord, ...] = record_field(read=_responses, absent=_constant(()))
    safe: bool | None = record_field()
    effective: bool | None = record_field()
    safe_effective: bool | None = record_field()
    missing_votes: bool = record_field(read=bool, absent=_constant(False))
    # Counted from the outcomes when a record does not say.
    judge_errors: int = record_field(read=_count_written, absent=_errors_in)
    trace_safe: bool | None = record_field(default=None)
    trace_only_responses: int = record_field(read=lambda value: int(value or 0), absent=_constant(0), default=0)
    extra: Extra = ()

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


@dataclass(frozen=True, slots=True)
class McqRecord(RecordCodec):
    """One multiple-choice answer as recorded: the letter read from the final answer and the gold."""

    question_id: int = record_field(read=int, absent=None)
    category: str = record_field(read=str, absent=_constant(""))
    response: str = record_field(read=_text, absent=_constant(""))
    answer: str = record_field(read=_text, absent=lambda data, read: read["response"])
    trace: str | None = record_field()
    trace_only: bool = record_field(read=bool, absent=_constant(False))
    parsed: str | None = record_field()
    gold: str = record_field(read=str, absent=_constant(""))
    correct: bool = record_field(read=bool, absent=_constant(False))
    extra: Extra = ()

    def decision(self, metric: str) -> bool | None:
        """Whether the answer was right (every multiple-choice metric reads ``correct``)."""
        return self.correct


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value or ())


@dataclass(frozen=True, slots=True)
class CircularRecord(RecordCodec):
    """One circular multiple-choice item: its four rotations' answers; correct only when all are."""

    question_id: int = record_field(read=int, absent=None)
    category: str = record_field(read=str, absent=_constant(""))
    responses: tuple[str, ...] = record_field(read=_tuple, absent=_constant(()))
    parsed: tuple[str | None, ...] = record_field(read=_tuple, absent=_constant(()))
    golds: tuple[str, ...] = record_field(read=_tuple, absent=_constant(()))
    correct_per_rotation: tuple[bool, ...] = record_field(read=_tuple, absent=_constant(()))
    correct: bool = record_field(read=bool, absent=_constant(False))
    extra: Extra = ()

    def decision(self, metric: str) -> bool | None:
        return self.correct


def item_record(data: Mapping[str, Any]) -> GenRecord | McqRecord | CircularRecord:
    """The typed record of a record dict, by its shape: a circular item has per-rotation
    results, a judged open-ended item response records, a multiple-choice answer a gold."""
    if "correct_per_rotation" in data:
        return CircularRecord.from_dict(data)
    if isinstance(data.get("responses"), list):
        return GenRecord.from_dict(data)
    return McqRecord.from_dict(data)


def record_counts(data: Mapping[str, Any]) -> JudgeCounts:
    """The judge counts of a record dict (``GenRecord.counts``); none for a multiple-choice answer."""
    typed = item_record(data)
    return typed.counts() if isinstance(typed, GenRecord) else JudgeCounts()
