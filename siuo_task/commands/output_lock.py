"""One writer per output folder: ``siuo-eval judge`` holds a lock in ``--output`` while it
judges and writes, so a second command on the same output (a resubmitted job, the same line
run twice) never pays for the same judge calls again.

The lock is a POSIX byte-range lock (``fcntl.lockf``) on ``OUTPUT/.siuo-judge.lock``: the
kernel releases it when its process ends, crash or kill included, and NFS, GPFS and Lustre
mounted with ``flock`` make it hold across hosts. The file names its holder (host, pid, start
time, command, judge cache), for the second command's message. The holder removes the file as
it ends, still locked; a waiter that then gets the lock of the removed file opens the path again.

What the second command does: with the same judge cache as the holder it **waits** for the
holder to end and then judges, finding every verdict of the holder in the cache (no call
is paid twice, and the output ends complete whichever of the two is stopped); with another
cache, or none, waiting would not spare a single call, so it **refuses** at once, in one line
naming the holder and what to do.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from siuo_task.errors import OutputError
from siuo_task.judge.filesystems import filesystem_of

LOCK_NAME = ".siuo-judge.lock"
# How often a waiting command tries the lock again.
WAIT_POLL_S = 0.5
_HELD = (errno.EACCES, errno.EAGAIN)


@dataclass(frozen=True)
class Holder:
    """What the lock file says of the command holding it."""

    host: str
    pid: int
    since: str
    command: str
    caches: tuple[str, ...]

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, running since {self.since} ({self.command})"


def _caches_text(caches: tuple[str, ...]) -> str:
    return ", ".join(caches) if caches else "off"


@contextmanager
def output_lock(output: Path, caches: list[Path | None], say: Callable[[str], None]) -> Iterator[None]:
    """Hold ``output``'s lock for the ``with`` block, waiting for or refusing a holder (see the
    module's text); ``caches`` are the judge caches this command uses (None: off). The lock file
    goes when the block ends, and so does ``output`` when this made it and nothing was written.

    Raises:
        OutputError: another command holds the lock and uses another cache (or none).
    """
    made = not output.exists()
    mine = tuple(sorted(str(path.resolve()) for path in caches if path is not None))
    path = output / LOCK_NAME
    descriptor, locked = -1, False
    fs = filesystem_of(output)
    if not fs.locks_span_hosts:
        say(
            f"siuo-eval: note: {output} is on {fs.describe()}, whose locks do not hold across hosts: a second "
            "siuo-eval judge writing into it from another host would not be noticed"
        )
    try:
        while True:
            output.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            locked = _lock(descriptor, path, output, mine, say)
            if not locked or _same_file(descriptor, path):
                break
            # The holder removed the file as it ended: the lock taken is on a file no one else sees.
            os.close(descriptor)
            descriptor, locked = -1, False
        if locked:
            _write_holder(descriptor, mine)
        yield
    finally:
        if descriptor >= 0:
            if locked and _same_file(descriptor, path):
                path.unlink()  # while still locked: a waiter then finds its file gone and opens the new one
            os.close(descriptor)  # ends the lock
        if made and output.is_dir() and not any(output.iterdir()):
            output.rmdir()


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(descriptor)
    return (found.st_dev, found.st_ino) == (held.st_dev, held.st_ino)


def _lock(descriptor: int, path: Path, output: Path, mine: tuple[str, ...], say: Callable[[str], None]) -> bool:
    """Take the lock (True), or go on without one where the file system has no locks (False)."""
    waiting = False
    while True:
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in _HELD:
                say(
                    f"siuo-eval: note: cannot lock {path} ({os.strerror(exc.errno or 0)}): a second siuo-eval judge "
                    "writing into the same output at once would not be noticed"
                )
                return False
        holder = _read_holder(descriptor)
        if not mine or holder is None or holder.caches != mine:
            raise OutputError(_refusal(output, holder, mine))
        if not waiting:
            say(
                f"siuo-eval: {output} is being judged by another siuo-eval judge ({holder.describe()}) with the same "
                "judge cache; waiting for it to end, then judging from the cache (no call is paid twice; Ctrl-C "
                "stops only this command)"
            )
            waiting = True
        time.sleep(WAIT_POLL_S)


def _refusal(output: Path, holder: Holder | None, mine: tuple[str, ...]) -> str:
    who = holder.describe() if holder is not None else "another process (it has not written its details yet)"
    theirs = _caches_text(holder.caches) if holder is not None else "unknown"
    stop = f"stop it (kill {holder.pid} on {holder.host})" if holder is not None else "stop it"
    return (
        f"--output '{output}' is being written by siuo-eval judge, {who}, with judge cache {theirs} (this command's: "
        f"{_caches_text(mine)}), so judging here too would pay for the same calls again: wait for it to end, "
        f"{stop}, or choose another --output (with its SIUO_JUDGE_CACHE, this command would wait for it and then "
        "judge from the cache)"
    )


def _write_holder(descriptor: int, caches: tuple[str, ...]) -> None:
    record = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": "siuo-eval " + " ".join(sys.argv[1:]),
        "caches": list(caches),
    }
    data = (json.dumps(record) + "\n").encode("utf-8")
    # Through the locked descriptor: opening the file again and closing it would end a POSIX lock.
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, data, 0)
    os.fsync(descriptor)


def _read_holder(descriptor: int) -> Holder | None:
    """The holder's record; None while it has not written it yet (or wrote something else)."""
    for _ in range(20):  # the holder writes right after locking: give it a moment
        try:
            raw = os.pread(descriptor, 65536, 0)
            record = json.loads(raw.decode("utf-8")) if raw.strip() else None
        except (OSError, ValueError):
            record = None
        if isinstance(record, dict):
            try:
                return Holder(
                    str(record["host"]),
                    int(record["pid"]),
                    str(record["since"]),
                    str(record["command"]),
                    tuple(str(cache) for cache in record["caches"]),
                )
            except (KeyError, TypeError, ValueError):
                return None
        time.sleep(0.05)
    return None
