"""The judge engine: sends judge prompts with their image and parses the verdicts.

Calls run on one bounded thread pool per engine, so every caller in a process (lmms-eval's
post-processing threads included) shares the same concurrency bound. A call that ends without
a parsed verdict becomes an outcome with ``error`` set and ``verdict`` None: never a verdict.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from siuo_task.judge.config import JudgeConfig
from siuo_task.parsing import parse_effectiveness_verdict, parse_safety_verdict

JudgeKind = Literal["safety", "effectiveness"]
Verdict = bool | str

_MIME_BY_FORMAT = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
_KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_\-*]{6,}")


@dataclass(frozen=True, slots=True)
class JudgeRequest:
    """One judge call: which verdict, the filled prompt, and the item's image."""

    kind: JudgeKind
    prompt: str
    image_path: Path


@dataclass(frozen=True, slots=True)
class JudgeOutcome:
    """What one judge call produced. ``verdict`` is None exactly when ``error`` is set."""

    kind: JudgeKind
    verdict: Verdict | None
    raw_text: str | None
    error: str | None
    model: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@lru_cache(maxsize=512)
def image_data_url(path: Path) -> str:
    """The image as a data URL whose MIME type matches the bytes, not the file name."""
    data = path.read_bytes()
    with Image.open(path) as image:
        mime = _MIME_BY_FORMAT.get(image.format or "", "image/png")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def parse_verdict(kind: JudgeKind, text: str) -> Verdict | None:
    if kind == "safety":
        return parse_safety_verdict(text)
    return parse_effectiveness_verdict(text)


class JudgeEngine:
    """Grades judge requests against an OpenAI-compatible chat-completions endpoint."""

    def __init__(self, config: JudgeConfig) -> None:
        from openai import OpenAI

        self.config = config
        # The openai client retries 429 (honouring Retry-After), 5xx and dropped connections
        # with exponential backoff; after max_attempts the call becomes a judge error.
        self._client = OpenAI(
            api_key=config.api_key,
            base_url=config.base_url,
            timeout=config.timeout_s,
            max_retries=config.max_attempts - 1,
        )
        self._pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="siuo-judge")

    def grade_many(self, requests: Sequence[JudgeRequest]) -> list[JudgeOutcome]:
        """Grade requests concurrently (within the engine's bound); results keep input order."""
        futures = [self._pool.submit(self.grade, request) for request in requests]
        return [future.result() for future in futures]

    def grade(self, request: JudgeRequest) -> JudgeOutcome:
        """One judge call; any failure is returned as an outcome with ``error`` set."""
        try:
            completion = self._client.chat.completions.create(
                model=self.config.model,
                messages=[{"role": "user", "content": self._content(request)}],
                temperature=self.config.temperature,
                max_tokens=self.config.max_tokens,
            )
        except Exception as exc:  # every failure of the call is recorded, none is fatal
            return self._failure(request.kind, f"judge call failed: {type(exc).__name__}: {exc}")
        return self._outcome(request.kind, completion)

    def _content(self, request: JudgeRequest) -> list[dict[str, Any]]:
        return [
            {"type": "text", "text": request.prompt},
            {"type": "image_url", "image_url": {"url": image_data_url(request.image_path)}},
        ]

    def _outcome(self, kind: JudgeKind, completion: Any) -> JudgeOutcome:
        usage = getattr(completion, "usage", None)
        tokens = {
            "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
            "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
        }
        model = getattr(completion, "model", None)
        choices = getattr(completion, "choices", None) or []
        text = choices[0].message.content if choices and choices[0].message else None
        if not text or not text.strip():
            return self._failure(kind, "judge returned an empty reply", model=model, **tokens)
        verdict = parse_verdict(kind, text)
        if verdict is None:
            return JudgeOutcome(kind, None, text, f"no {kind} verdict found in the judge's reply", model, **tokens)
        return JudgeOutcome(kind, verdict, text, None, model, **tokens)

    def _failure(self, kind: JudgeKind, message: str, model: str | None = None, **tokens: int) -> JudgeOutcome:
        return JudgeOutcome(kind, None, None, self.redact(message), model, **tokens)

    def redact(self, text: str) -> str:
        """Remove the API key (and anything key-shaped) from text bound for logs or files."""
        if self.config.api_key and len(self.config.api_key) >= 4:
            text = text.replace(self.config.api_key, "[redacted]")
        return _KEY_LIKE.sub("[redacted]", text)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()
