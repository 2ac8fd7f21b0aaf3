"""One-line notices from the judge client on stderr, each said once per process.

For what the user should know but that stops nothing: the cache or the limits moved off a
network file system, requests waiting for another process's verdicts.
"""

from __future__ import annotations

import sys
import threading

_said: set[str] = set()
_lock = threading.Lock()


def notice_once(text: str) -> None:
    """Print ``siuo-task: TEXT`` on stderr, unless this process already did."""
    with _lock:
        if text in _said:
            return
        _said.add(text)
    try:
        print(f"siuo-task: {text}", file=sys.stderr, flush=True)
    except ValueError:  # stderr replaced and closed (e.g. captured by a harness or a test runner)
        pass
