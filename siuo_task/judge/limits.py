"""Bounds on judge traffic that hold across every thread and process of a machine.

lmms-eval judges on every rank, in threads, so a per-process semaphore cannot bound what the
server sees. Every limit here uses ``flock`` on files in a directory named after the endpoint,
model and bound, which every process on the machine derives the same way.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from siuo_task.errors import JudgeConfigError
from siuo_task.judge.filesystems import filesystem_of, local_folder, machine_local_candidates
from siuo_task.judge.notices import notice_once


def limits_dir(endpoint: str, model: str, concurrency: int) -> Path:
    """The shared directory for one (endpoint, model, bound): same path in every process."""
    tag = hashlib.sha256(f"{endpoint}\0{model}\0{concurrency}".encode()).hexdigest()[:16]
    path = limits_root() / f"siuo-judge-{os.getuid()}" / tag
    path.mkdir(parents=True, exist_ok=True)
    return path


def limits_root() -> Path:
    """Where the limit files live: the temporary folder, unless it is on a network file system
    (a cluster's $TMPDIR on shared scratch), whose locks are slow, missing, or shared with other
    hosts; then the first local one of $XDG_RUNTIME_DIR, /dev/shm, /tmp, /var/tmp, said in one line."""
    temporary = Path(tempfile.gettempdir())
    fs = filesystem_of(temporary)
    if not fs.is_network:
        return temporary
    local = local_folder(machine_local_candidates())
    if local is not None:
        notice_once(
            f"the temporary folder {temporary} is on {fs.describe()}; the judge's machine-wide limits (concurrency "
            f"slots, request and token schedules) use {local} instead, a local folder"
        )
        return local
    if fs.locks_span_hosts:
        notice_once(
            f"the temporary folder {temporary} is on {fs.describe()} and no local folder was found; the judge's "
            "limits (concurrency slots, request and token schedules) are kept there, shared by every host using it"
        )
        return temporary
    raise JudgeConfigError(
        f"the judge's machine-wide limits need a folder with working locks: the temporary folder {temporary} is on "
        f"{fs.describe()}, whose locks do not hold across hosts, and no local folder was found; set TMPDIR to a "
        "folder on a local disk"
    )


class SlotLimiter:
    """At most ``slots`` holders at once among all processes and threads sharing ``directory``.

    Each holder flocks one of ``slots`` files; ``flock`` conflicts between separate opens, so
    threads of one process compete like processes do. A local semaphore keeps a process from
    polling for more slots than exist.
    """

    def __init__(self, directory: Path, slots: int) -> None:
        self._paths = [directory / f"slot-{index}.lock" for index in range(slots)]
        self._local = threading.BoundedSemaphore(slots)

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._local:
            descriptor = self._acquire()
            try:
                yield
            finally:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
                os.close(descriptor)

    def _acquire(self) -> int:
        while True:
            start = random.randrange(len(self._paths))
            for offset in range(len(self._paths)):
                path = self._paths[(start + offset) % len(self._paths)]
                descriptor = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return descriptor
                except BlockingIOError:
                    os.close(descriptor)
            time.sleep(random.uniform(0.002, 0.01))


class RateLimiter:
    """Spaces request starts on a schedule shared across processes: each start books
    ``weight`` units of a budget of ``per_minute`` units (requests for SIUO_JUDGE_RPM, tokens
    for SIUO_JUDGE_TPM), so starts are at least weight x 60 / per_minute seconds apart."""

    def __init__(self, directory: Path, per_minute: int, unit: str = "rpm") -> None:
        self._path = directory / f"{unit}-{per_minute}.schedule"
        self._seconds_per_unit = 60.0 / per_minute

    def wait_turn(self, weight: float = 1.0) -> None:
        with open(self._path, "a+", encoding="ascii") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            raw = handle.read().strip()
            now = time.time()
            turn = max(now, float(raw) if raw else 0.0)
            handle.seek(0)
            handle.truncate()
            handle.write(repr(turn + weight * self._seconds_per_unit))
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
        if turn > now:
            time.sleep(turn - now)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# Hold new requests when the provider says fewer than this many requests / tokens remain.
LOW_REQUESTS = 1
LOW_TOKENS_REQUESTS = 2  # room for this many typical requests


def parse_reset(value: str | None) -> float | None:
    """Seconds in an OpenAI-style reset header ("1s", "6m0s", "20ms", "1h2m3.5s", "0.5")."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


class ProviderHold:
    """Honours the provider's x-ratelimit-* headers machine-wide: when a reply says the
    requests or tokens left in the window are nearly spent, every process on the machine holds
    new requests until enough are back (the window's reset, or sooner at the announced
    x-ratelimit-limit-* per minute; a shared "not before" time in one file)."""

    def __init__(self, directory: Path) -> None:
        self._path = directory / "provider-hold"

    def note(self, headers: Mapping[str, str] | None, typical_tokens: int) -> float:
        """Read one reply's headers; returns the hold (seconds) it set, 0 when none."""
        if headers is None:
            return 0.0
        hold = 0.0
        for unit, low in (("requests", LOW_REQUESTS), ("tokens", LOW_TOKENS_REQUESTS * typical_tokens)):
            remaining = _number(headers.get(f"x-ratelimit-remaining-{unit}"))
            reset = parse_reset(headers.get(f"x-ratelimit-reset-{unit}"))
            if remaining is not None and reset is not None and remaining < low:
                # The reset is when the whole window is back; with the per-minute limit known,
                # what is missing comes back sooner, at limit / 60 per second.
                limit = _number(headers.get(f"x-ratelimit-limit-{unit}"))
                if limit is not None and limit > 0:
                    reset = min(reset, (low - remaining) * 60.0 / limit)
                hold = max(hold, min(reset, 120.0))
        if hold:
            self._extend(time.time() + hold)
        return hold

    def _extend(self, until: float) -> None:
        with open(self._path, "a+", encoding="ascii") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            raw = handle.read().strip()
            if not raw or float(raw) < until:
                handle.seek(0)
                handle.truncate()
                handle.write(repr(until))
                handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)

    def wait(self) -> None:
        try:
            raw = self._path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return
        delay = (float(raw) if raw else 0.0) - time.time()
        if delay > 0:
            time.sleep(delay)


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
