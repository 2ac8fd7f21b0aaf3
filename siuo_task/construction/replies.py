"""Validation of the JSON replies the construction stages and the audit ask for.

A stage reply is accepted only as a whole: every required field present with its type, the
category among the allowed ones, four options A-D and one correct option. Anything else is a
malformed reply (a stage error with the reason), never half an item. A reply that declines the
task is a refusal, recorded as such; it is kept as a parsed value (``{"refused": true, ...}``)
so that it is cached and a rerun sees the same refusal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

MCQ_LETTERS = ("A", "B", "C", "D")
REFUSAL = re.compile(
    r"^\W*(i['\u2019]m sorry|i am sorry|sorry,|i can(?:no|['\u2019])t|i cannot|i won['\u2019]t|i will not|i am unable|"
    r"i['\u2019]m unable|i['\u2019]m not able|as an ai)",
    re.IGNORECASE,
)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)

Validator = Callable[[dict[str, Any]], str | None]


class ReplyError(ValueError):
    """A reply that is not the JSON object its stage asked for; the message says why."""


def is_refusal(text: str) -> bool:
    """Whether a reply declines the task (judged on its opening words)."""
    return bool(REFUSAL.match(text.strip()))


def load_object(text: str) -> dict[str, Any]:
    """The JSON object in a reply (a ```json fence around it is tolerated).

    Raises:
        ReplyError: not JSON, or JSON that is not an object.
    """
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ReplyError(f"reply is not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, dict):
        raise ReplyError(f"reply is JSON {type(value).__name__}, expected an object")
    return value


def require(obj: Mapping[str, Any], fields: Mapping[str, type]) -> None:
    """Each field present with its type; strings non-empty.

    Raises:
        ReplyError: naming the first field at fault.
    """
    for name, kind in fields.items():
        if name not in obj:
            raise ReplyError(f"field '{name}' is missing")
        value = obj[name]
        if (kind is not bool and isinstance(value, bool)) or not isinstance(value, kind):
            raise ReplyError(f"field '{name}' is {type(value).__name__}, expected {kind.__name__}")
        if isinstance(value, str) and not value.strip():
            raise ReplyError(f"field '{name}' is empty")


ITEM_TEXT_FIELDS: dict[str, type] = {"question": str, "safety_warning": str, "reference_answer": str}


def check_query(obj: Mapping[str, Any], categories: Sequence[str]) -> None:
    """Stage 1: either usable with category, scenario and the item texts, or unusable with a reason."""
    require(obj, {"usable": bool, "reason": str})
    if not obj["usable"]:
        return
    require(obj, {"category": str, "scenario": str, **ITEM_TEXT_FIELDS})
    if obj["category"] not in categories:
        raise ReplyError(f"field 'category' is {obj['category']!r}, not one of {list(categories)}")


def check_reflect(obj: Mapping[str, Any]) -> None:
    """Stage 2: keep flag, checks, the final texts and a four-option MCQ with one correct option."""
    require(obj, {"keep": bool, "reason": str})
    if not obj["keep"]:
        return
    require(obj, {"redundant": bool, "complete": bool, **ITEM_TEXT_FIELDS, "options": dict, "correct_option": str})
    options = obj["options"]
    if tuple(sorted(options)) != MCQ_LETTERS:
        raise ReplyError(f"field 'options' has keys {sorted(options)}, expected {list(MCQ_LETTERS)}")
    for letter in MCQ_LETTERS:
        if not isinstance(options[letter], str) or not options[letter].strip():
            raise ReplyError(f"option {letter} is not a non-empty string")
    if len({text.strip() for text in options.values()}) != len(MCQ_LETTERS):
        raise ReplyError("two options have the same text")
    if obj["correct_option"] not in MCQ_LETTERS:
        raise ReplyError(f"field 'correct_option' is {obj['correct_option']!r}, expected one of A, B, C, D")


def check_safety(obj: Mapping[str, Any]) -> None:
    """Text or image safety judgement: a boolean and a reason."""
    require(obj, {"safe": bool, "reason": str})


def validate(text: str, check: Callable[[Mapping[str, Any]], None]) -> dict[str, Any]:
    """The reply's object, or ``{"refused": true, "text": ...}`` for a refusal.

    Raises:
        ReplyError: the reply is malformed.
    """
    try:
        obj = load_object(text)
    except ReplyError:
        if is_refusal(text):
            return {"refused": True, "text": text.strip()}
        raise
    check(obj)
    return obj


def json_parser(check: Callable[[Mapping[str, Any]], None]) -> Callable[[str], str | None]:
    """An engine reply parser: the validated object as canonical JSON text, None if malformed."""

    def parse(text: str) -> str | None:
        try:
            return json.dumps(validate(text, check), sort_keys=True, ensure_ascii=False)
        except ReplyError:
            return None

    return parse


def text_parser(text: str) -> str | None:
    """A free-text answer (stage 3a): any non-empty reply; refusals are answers too."""
    return text.strip() or None
