"""What the judge client is asked and what it answers: ``JudgeRequest`` and ``JudgeOutcome``.

The client knows nothing of any benchmark: each request brings its own reply parser, prompt
version (part of the cache key) and, for verdicts, its own test of a refusal to grade.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

Verdict = bool | str

# Turns a reply's text into its parsed value, or None when the reply does not hold one.
ReplyParser = Callable[[str], Verdict | None]
# Whether a (non-empty) reply without a parsed value is a refusal to grade.
DeclineTest = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class JudgeRequest:
    """One chat call: what it is for, the filled prompt, an optional image, and how to read the reply.

    ``kind`` names the request in outcomes, errors and the decline watch (e.g. "safety");
    ``image_path`` None sends text only; ``parser`` turns the reply into its value (None: no
    value, an error outcome); ``prompt_version`` is part of the cache key, so changing a
    template's version re-asks instead of reusing old replies; ``json_reply`` asks for
    ``response_format={"type": "json_object"}``; ``is_decline`` marks a request as a verdict
    whose refusals count (``declined`` outcomes, the per-kind decline watch), None for calls
    that are not gradings (construction stages, the input audit). ``repeat`` asks the same
    request again as a distinct one (its own cache key, never coalesced with the others), e.g.
    to measure how stable a judge's verdicts are; 0 is the ordinary, first asking.
    """

    kind: str
    prompt: str
    image_path: Path | None
    parser: ReplyParser
    prompt_version: str
    json_reply: bool = False
    is_decline: DeclineTest | None = None
    repeat: int = 0


@dataclass(frozen=True, slots=True)
class JudgeOutcome:
    """What one judge request produced. ``verdict`` is None exactly when ``error`` is set.

    ``attempts`` counts HTTP requests sent in this run (0 for a cache hit); token counts are
    this run's spend, so a cache hit costs nothing. ``coalesced``: answered by an identical
    request of this engine (no call, no cost). ``declined``: the judge replied but refused to
    grade (a judge error like any reply without a verdict, counted apart).

    A panel's outcome (``siuo_task.judge.panel``) keeps each judge's own outcome in ``judges``
    (panel order), each naming its judge in ``judge``; both are absent from ``to_dict`` for one
    judge, so one judge's records keep their shape. ``stopped`` marks a panel judge's outcome
    for a request it never answered because it had stopped earlier in the run (refused, declined
    too often, or stayed down past the outage hold): an error, recorded only when set, which a
    rerun asks that judge again.
    """

    kind: str
    verdict: Verdict | None
    raw_text: str | None
    error: str | None
    model: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    cached: bool = False
    coalesced: bool = False
    declined: bool = False
    judge: str | None = None
    judges: tuple[JudgeOutcome, ...] | None = None
    stopped: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _PLAIN_FIELDS}
        if self.judge is not None:
            data["judge"] = self.judge
        if self.judges is not None:
            data["judges"] = [outcome.to_dict() for outcome in self.judges]
        if self.stopped:
            data["stopped"] = True
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JudgeOutcome:
        """The outcome ``to_dict`` wrote; keys of no field are left out, and the five fields
        without a default are filled for outcomes recorded before one of them existed."""
        known = {key: value for key, value in data.items() if key in _FIELD_NAMES}
        for name in ("kind", "verdict", "raw_text", "error", "model"):
            known.setdefault(name, "" if name == "kind" else None)
        # A panel's outcome: each judge's own outcome, in panel order.
        if known.get("judges") is not None:
            known["judges"] = tuple(cls.from_dict(judge) for judge in known["judges"] if judge)
        return cls(**known)

    def coalesced_copy(self) -> JudgeOutcome:
        """This answer as the outcome of an identical request: no call, no cost."""
        return replace(self, attempts=0, prompt_tokens=0, completion_tokens=0, cached=False, coalesced=True)


_PLAIN_FIELDS = tuple(f.name for f in fields(JudgeOutcome) if f.name not in ("judge", "judges", "stopped"))
_FIELD_NAMES = frozenset(f.name for f in fields(JudgeOutcome))


def read_completion(request: JudgeRequest, completion: Any, attempts: int) -> JudgeOutcome:
    """The outcome of a chat completion (the SDK's object, or one validated from a batch line):
    the request's parser reads the reply; a reply without a value is an error, a refusal to
    grade only for a request with a decline test."""
    kind = request.kind
    usage = getattr(completion, "usage", None)
    model = getattr(completion, "model", None)
    choices = getattr(completion, "choices", None) or []
    text = choices[0].message.content if choices and choices[0].message else None
    verdict = request.parser(text) if text and text.strip() else None
    error = None
    # Only verdict requests (those with a decline test) count refusals to grade.
    declined = verdict is None and bool(text) and request.is_decline is not None and request.is_decline(text or "")
    if verdict is None:
        if declined:
            error = f"no {kind} verdict: the judge declined to grade"
        elif text and text.strip():
            error = f"no {kind} verdict found in the judge's reply"
        else:
            error = "judge returned an empty reply"
    return JudgeOutcome(
        kind,
        verdict,
        text,
        error,
        model,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        attempts=attempts,
        declined=declined,
    )
