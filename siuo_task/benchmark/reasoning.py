"""Split a reasoning model's visible trace from its final answer.

Reasoning VLMs write a trace (``<think>...</think>`` and variants) before the answer. The
answer is what the MCQ parser and the generation judge must see; the trace is kept in the
record, and can itself be judged for safety (a visible trace is output too).

Handled: one or several closed blocks; nested blocks of the same tag (depth counted); an
opening tag that is never closed (the rest is trace: the model ran out of tokens while
thinking); a closing tag with no opening tag (the chat template prefilled the opening tag, so
everything before it is trace). Tags match case-insensitively. A response whose answer is empty
once the trace is removed but that had a trace is *trace-only*: it has no final answer.

Settings (read only by ``ReasoningSettings.from_env``, from the variables an entry point read):
``SIUO_REASONING_TAGS``: ``none`` to turn splitting off, or a JSON list of [open, close] pairs
(default: DEFAULT_TAGS); ``SIUO_JUDGE_TRACES=1``: also judge each trace for safety.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from siuo_task.errors import SiuoError

TagPair = tuple[str, str]

DEFAULT_TAGS: tuple[TagPair, ...] = (
    ("<think>", "</think>"),
    ("<thinking>", "</thinking>"),
    ("<reasoning>", "</reasoning>"),
    ("<reason>", "</reason>"),
    ("<analysis>", "</analysis>"),
    ("◁think▷", "◁/think▷"),
    ("<|begin_of_thought|>", "<|end_of_thought|>"),
)


class ReasoningConfigError(SiuoError):
    """SIUO_REASONING_TAGS or SIUO_JUDGE_TRACES cannot be read."""


@dataclass(frozen=True, slots=True)
class ReasoningSplit:
    """A response cut into its reasoning trace (None when it had none) and final answer."""

    answer: str
    trace: str | None

    @property
    def trace_only(self) -> bool:
        """The response is a trace with no final answer (e.g. it stopped while thinking)."""
        return bool(self.trace and self.trace.strip()) and not self.answer.strip()


@dataclass(frozen=True, slots=True)
class ReasoningSettings:
    """Which tags mark a trace, and whether traces are judged for safety."""

    tags: tuple[TagPair, ...] = DEFAULT_TAGS
    judge_traces: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ReasoningSettings:
        """From the variables an entry point read (``siuo_task.settings.Settings.reasoning``)."""
        return cls(
            tags=_tags_from(environ.get("SIUO_REASONING_TAGS", "")), judge_traces=_flag(environ, "SIUO_JUDGE_TRACES")
        )


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ReasoningConfigError(f"{name}={value!r}: use 1 (on) or 0 (off)")


def _tags_from(raw: str) -> tuple[TagPair, ...]:
    text = raw.strip()
    if not text:
        return DEFAULT_TAGS
    if text.lower() == "none":
        return ()
    try:
        pairs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReasoningConfigError(
            f"SIUO_REASONING_TAGS is not JSON ({exc}); use e.g. '[[\"<think>\", \"</think>\"]]' or 'none'"
        ) from exc
    if not isinstance(pairs, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(t, str) and t for t in p) for p in pairs
    ):
        raise ReasoningConfigError(
            "SIUO_REASONING_TAGS must be a JSON list of [open, close] string pairs, "
            'e.g. \'[["<think>", "</think>"]]\', or none'
        )
    return tuple((open_tag, close_tag) for open_tag, close_tag in pairs)


def split_reasoning(response: str, tags: Sequence[TagPair] = DEFAULT_TAGS) -> ReasoningSplit:
    """Separate the reasoning trace from the final answer.

    Args:
        response: the model's raw reply.
        tags: the [open, close] tag pairs that mark a trace (empty: no splitting).
    """
    traces: list[str] = []
    answer = response
    for open_tag, close_tag in tags:
        answer = _remove_blocks(answer, open_tag, close_tag, traces)
    if not traces:
        return ReasoningSplit(response, None)
    return ReasoningSplit(answer.strip(), "\n\n".join(traces))


def _tag_pattern(open_tag: str, close_tag: str) -> re.Pattern[str]:
    return re.compile(f"({re.escape(open_tag)})|({re.escape(close_tag)})", re.IGNORECASE)


def _remove_blocks(text: str, open_tag: str, close_tag: str, traces: list[str]) -> str:
    """Cut out every outermost block of this tag pair; append each block's inside to traces."""
    tokens = list(_tag_pattern(open_tag, close_tag).finditer(text))
    if not tokens:
        return text
    kept: list[str] = []
    depth, start, cursor = 0, 0, 0
    for token in tokens:
        if token.group(1):  # opening tag
            if depth == 0:
                kept.append(text[cursor : token.start()])
                start = token.end()
            depth += 1
        elif depth == 0:
            # A closing tag with nothing open: the opening tag was in the prompt (prefilled),
            # so everything so far is trace.
            traces.append("".join(kept) + text[cursor : token.start()])
            kept, cursor = [], token.end()
        else:
            depth -= 1
            if depth == 0:
                traces.append(text[start : token.start()])
                cursor = token.end()
    if depth > 0:  # never closed: the rest is trace
        traces.append(text[start:])
        return "".join(kept)
    kept.append(text[cursor:])
    return "".join(kept)
