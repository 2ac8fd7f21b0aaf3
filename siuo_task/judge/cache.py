"""A persistent cache of parsed judge verdicts, shared safely by processes, threads and hosts.

SQLite, each thread with its own connection. On a local disk in WAL mode: readers never block,
writers serialise on the database lock. On a network file system (``filesystems.py``) WAL
cannot work across hosts (its index lives in memory shared through the ``-shm`` file), so the
cache uses a rollback journal (``journal_mode=PERSIST``: the journal file stays, saving a file
creation and removal per write, slow on a network file system) and the file system's byte-range locks
where those hold across hosts, and a file on a local disk of this host where they do not; one
line on stderr says which.

Only calls that produced a parsed verdict are stored, so a rerun retries every error. The key
covers everything that decides the verdict; the API key is never part of a key or a row.

**Claims**: a process about to call the judge for a key it did not find claims the key (owner
host, pid, and an expiry its heartbeat pushes forward); another process sharing the cache finds
the claim and waits for the verdict instead of paying for the same call (``JudgeEngine``). A
claim ends when its call ends, when its process closes the cache, or when it expires: a crashed
owner's claims are free at once on its own host (its pid is gone) and after ``CLAIM_TTL_S``
seconds elsewhere. A call that got a reply holding no verdict (a refusal to grade) leaves that
reply in its claim, which the other processes use instead of buying the same reply. It is not a
verdict, so it is not cached: it lasts while its process runs and, when that process ends
normally, ``CLAIM_TTL_S`` seconds more (a command that waited for it on the same output finds
it); a crashed process's replies, and a process's own, are asked again.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from siuo_task.errors import JudgeConfigError
from siuo_task.judge.filesystems import filesystem_of, local_folder
from siuo_task.judge.notices import notice_once

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
_CLAIMS_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    since REAL NOT NULL,
    expires REAL NOT NULL,
    reply TEXT,
    model TEXT,
    kept INTEGER NOT NULL DEFAULT 0
)
"""
# The journal mode on a network file system: a rollback journal, kept between writes.
ROLLBACK_JOURNAL = "PERSIST"
# A claim's life without its owner's heartbeat (renewed every third of it).
CLAIM_TTL_S = 30.0


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


@dataclass(frozen=True, slots=True)
class ClaimHolder:
    """Another process grading a key: where, which process, since when (epoch seconds)."""

    host: str
    pid: int
    since: float
    reply: str | None = None  # its call's reply, which held no verdict; None while in flight
    model: str | None = None

    def describe(self) -> str:
        """The process (the same for all its claims, so a notice naming it is said once)."""
        return f"pid {self.pid} on {self.host}"


@dataclass(frozen=True, slots=True)
class CacheLocation:
    """Where the cache is opened, in which journal mode, and why (a notice, or "")."""

    path: Path
    journal_mode: str
    notice: str = ""


def cache_location(path: Path) -> CacheLocation:
    """The file and journal mode that are safe for a cache configured at ``path``.

    Local disk: WAL. Network file system with locks that hold across hosts: the same file with
    a rollback journal (every host shares it). Network file system without such locks: a file
    of the same name on a local disk of this host, in WAL (shared by this host's processes only).
    """
    fs = filesystem_of(path.parent)
    if not fs.is_network:
        return CacheLocation(path, "WAL")
    if fs.locks_span_hosts:
        return CacheLocation(
            path,
            ROLLBACK_JOURNAL,
            f"the judge cache {path} is on {fs.describe()}, where SQLite's WAL mode cannot work across hosts; "
            "it uses a rollback journal and the file system's locks instead (safe when several hosts share it)",
        )
    local = local_folder([Path(tempfile.gettempdir()), Path("/var/tmp"), Path("/tmp")])
    if local is None:
        raise CacheUnavailable(
            f"the judge cache '{path}' is on {fs.describe()}, whose locks do not hold across hosts, and no local "
            "folder was found for it ($TMPDIR, /var/tmp, /tmp): point SIUO_JUDGE_CACHE at a file on a local disk"
        )
    tag = hashlib.sha256(str(path.absolute()).encode()).hexdigest()[:12]
    moved = local / f"siuo-task-{os.getuid()}" / f"{path.stem}-{tag}{path.suffix}"
    return CacheLocation(
        moved,
        "WAL",
        f"the judge cache {path} is on {fs.describe()}, whose locks do not hold across hosts, so SQLite could "
        f"corrupt it there; using {moved} on this host instead (not shared with other hosts; to choose, point "
        "SIUO_JUDGE_CACHE at a local disk or at NFS, GPFS or Lustre mounted with flock)",
    )


class VerdictCache:
    """Judge replies by cache key, in one SQLite file (``cache_location`` may move it)."""

    def __init__(self, path: Path, claim_ttl_s: float = CLAIM_TTL_S) -> None:
        location = cache_location(path)
        self.path = location.path
        self.claim_ttl_s = claim_ttl_s
        self._local = threading.local()
        self._host = socket.gethostname()
        self._owner = f"{self._host}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._heartbeat: threading.Thread | None = None
        self._closing = threading.Event()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = self._connection()
            mode = connection.execute(f"PRAGMA journal_mode={location.journal_mode}").fetchall()[0][0]
            connection.execute(_SCHEMA)
            connection.execute(_CLAIMS_SCHEMA)
            connection.commit()
        except (OSError, sqlite3.Error) as exc:
            reason = "it is a folder" if self.path.is_dir() else str(exc)
            if location.journal_mode == ROLLBACK_JOURNAL and "locked" in reason:
                reason += "; another process has it open in SQLite's WAL mode, which cannot work on this file system"
            raise CacheUnavailable(
                f"the judge cache '{self.path}' cannot be opened ({reason}): point SIUO_JUDGE_CACHE at a file in a "
                "writable folder, or set SIUO_JUDGE_CACHE=off to judge without a cache"
            ) from None
        if location.journal_mode == ROLLBACK_JOURNAL and str(mode).upper() == "WAL":
            # A WAL database still open in WAL by another process cannot leave WAL.
            raise CacheUnavailable(
                f"the judge cache '{self.path}' is on a network file system but stays in SQLite's WAL mode "
                "(another process has it open): stop the processes using it, or point SIUO_JUDGE_CACHE at a "
                "file on a local disk"
            )
        if location.notice:
            notice_once(location.notice)

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            # Used by its thread only; close() closes them all once the threads are done.
            connection = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False)
            connection.execute("PRAGMA busy_timeout=60000")
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    def get(self, key: str) -> CachedReply | None:
        row = self._one("SELECT raw_text, model, prompt_tokens, completion_tokens FROM verdicts WHERE key = ?", key)
        return CachedReply(*row) if row else None

    def _one(self, query: str, key: str) -> tuple | None:
        """The first row of ``query``, its statement finished at once: in a rollback journal an
        unfinished read keeps its shared lock, which would hold every writer back."""
        rows = self._connection().execute(query, (key,)).fetchall()
        return rows[0] if rows else None

    def put(self, key: str, kind: str, reply: CachedReply) -> None:
        connection = self._connection()
        with connection:
            connection.execute(
                "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?)",
                (key, kind, reply.raw_text, reply.model, reply.prompt_tokens, reply.completion_tokens),
            )

    def claim(self, key: str) -> ClaimHolder | None:
        """Claim ``key`` for this cache object's process; None when claimed (or already ours),
        else the other process holding a live claim on it."""
        connection = self._connection()
        now = time.time()
        connection.execute("BEGIN IMMEDIATE")  # read and write the claim in one write transaction
        try:
            query = "SELECT owner, host, pid, since, expires, reply, model, kept FROM claims WHERE key = ?"
            row = self._one(query, key)
            if row is not None and row[0] != self._owner and row[4] > now:
                owner_ended = self._gone(row[1], row[2])
                if row[5] is None and not owner_ended:  # a call in flight
                    connection.rollback()
                    return ClaimHolder(row[1], row[2], row[3])
                # Answered without a verdict by another process, running or ended normally.
                other = (row[1], row[2]) != (self._host, os.getpid())
                if row[5] is not None and other and (row[7] or not owner_ended):
                    connection.rollback()
                    return ClaimHolder(row[1], row[2], row[3], row[5], row[6])
            connection.execute(
                "INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, 0)",
                (key, self._owner, self._host, os.getpid(), now, now + self.claim_ttl_s),
            )
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        self._start_heartbeat()
        return None

    def release(self, key: str) -> None:
        """End this process's claim on ``key`` (its call ended, verdict or not)."""
        connection = self._connection()
        with connection:
            connection.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, self._owner))

    def settle_without_verdict(self, key: str, reply: str, model: str | None) -> None:
        """End this process's call on ``key`` with a reply that held no verdict: the claim keeps
        the reply for the other processes (see the module's text)."""
        connection = self._connection()
        with connection:
            connection.execute(
                "UPDATE claims SET reply = ?, model = ?, expires = ? WHERE key = ? AND owner = ?",
                (reply, model, time.time() + self.claim_ttl_s, key, self._owner),
            )

    def close(self, connections: bool = True) -> None:
        """End every claim of this cache object and its heartbeat; with ``connections``, its
        connections too (only when no other thread uses the cache any more)."""
        self._closing.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5.0)
        try:
            connection = self._connection()
            with connection:
                connection.execute("DELETE FROM claims WHERE owner = ? AND reply IS NULL", (self._owner,))
                # Replies without a verdict stay until they expire: a command waiting for this one uses them.
                connection.execute(
                    "UPDATE claims SET kept = 1, expires = ? WHERE owner = ?",
                    (time.time() + self.claim_ttl_s, self._owner),
                )
        except sqlite3.Error:  # the claims then expire on their own
            pass
        if not connections:
            return
        with self._connections_lock:
            opened, self._connections = self._connections, []
        for connection in opened:
            connection.close()
        self._local = threading.local()

    def _gone(self, host: str, pid: int) -> bool:
        """Whether a claim's owner is a process of this host that no longer exists."""
        if host != self._host:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # exists, owned by another user
            return False
        return False

    def _start_heartbeat(self) -> None:
        if self._heartbeat is not None:
            return
        with _HEARTBEAT_START:
            if self._heartbeat is None:
                self._heartbeat = threading.Thread(target=self._beat, name="siuo-judge-claims", daemon=True)
                self._heartbeat.start()

    def _beat(self) -> None:
        while not self._closing.wait(self.claim_ttl_s / 3):
            try:
                connection = self._connection()
                with connection:
                    connection.execute(
                        "UPDATE claims SET expires = ? WHERE owner = ?", (time.time() + self.claim_ttl_s, self._owner)
                    )
            except sqlite3.Error:  # a busy database: the next beat comes well before expiry
                continue


_HEARTBEAT_START = threading.Lock()
