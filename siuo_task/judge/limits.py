"""Bounds on judge traffic that hold across every thread and process of a machine.

lmms-eval judges on every rank, in threads, so a per-process semaphore cannot bound what the
server sees. Both limits here use ``flock`` on files in a directory named after the endpoint,
model and bound, which every process on the machine derives the same way.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def limits_dir(endpoint: str, model: str, concurrency: int) -> Path:
    """The shared directory for one (endpoint, model, bound): same path in every process."""
    tag = hashlib.sha256(f"{endpoint}\0{model}\0{concurrency}".encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"siuo-judge-{os.getuid()}" / tag
    path.mkdir(parents=True, exist_ok=True)
    return path


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
    """Spaces request starts at least 60/rpm seconds apart across processes (a shared schedule)."""

    def __init__(self, directory: Path, requests_per_minute: int) -> None:
        self._path = directory / f"rpm-{requests_per_minute}.schedule"
        self._interval = 60.0 / requests_per_minute

    def wait_turn(self) -> None:
        with open(self._path, "a+", encoding="ascii") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            raw = handle.read().strip()
            now = time.time()
            turn = max(now, float(raw) if raw else 0.0)
            handle.seek(0)
            handle.truncate()
            handle.write(repr(turn + self._interval))
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
        if turn > now:
            time.sleep(turn - now)
