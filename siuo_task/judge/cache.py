"""A persistent cache of parsed judge verdicts, shared safely by processes and threads.

SQLite in WAL mode: readers never block, writers serialise on the database lock, and each
thread uses its own connection. Only calls that produced a parsed verdict are stored, so a
rerun retries every error. The key covers everything that decides the verdict; the API key is
never part of a key or a row.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from siuo_task.errors import JudgeConfigError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    raw_text TEXT NOT NULL,
    model TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class CachedReply:
    """A judge reply that parsed to a verdict; the verdict is re-parsed on read."""

    raw_text: str
    model: str | None
    prompt_tokens: int
    completion_tokens: int


def cache_key(
    *,
    model: str,
    endpoint: str,
    prompt: str,
    image_sha256: str,
    temperature: float,
    max_tokens: int,
    prompt_version: str,
    repeat: int = 0,
) -> str:
    """sha256 over everything that determines a verdict (never the API key).

    ``repeat`` (the n-th asking of the same request, 0 for the first) enters the material only
    when non-zero, so every key made before it existed is unchanged.
    """
    fields: dict[str, object] = {
        "model": model,
        "endpoint": endpoint,
        "prompt": prompt,
        "image_sha256": image_sha256,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "prompt_version": prompt_version,
    }
    if repeat:
        fields["repeat"] = repeat
    material = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


class CacheUnavailable(JudgeConfigError):
    """The cache file cannot be created or opened (a folder in its place, no write access, ...)."""


class VerdictCache:
    """Judge replies by cache key, in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = self._connection()
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(_SCHEMA)
            connection.commit()
        except (OSError, sqlite3.Error) as exc:
            reason = "it is a folder" if path.is_dir() else str(exc)
            raise CacheUnavailable(
                f"the judge cache '{path}' cannot be opened ({reason}): point SIUO_JUDGE_CACHE at a file in a "
                "writable folder, or set SIUO_JUDGE_CACHE=off to judge without a cache"
            ) from None

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=60.0)
            connection.execute("PRAGMA busy_timeout=60000")
            self._local.connection = connection
        return connection

    def get(self, key: str) -> CachedReply | None:
        row = (
            self._connection()
            .execute("SELECT raw_text, model, prompt_tokens, completion_tokens FROM verdicts WHERE key = ?", (key,))
            .fetchone()
        )
        return CachedReply(*row) if row else None

    def put(self, key: str, kind: str, reply: CachedReply) -> None:
        connection = self._connection()
        with connection:
            connection.execute(
                "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?)",
                (key, kind, reply.raw_text, reply.model, reply.prompt_tokens, reply.completion_tokens),
            )
