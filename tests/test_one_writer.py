"""One run, one writer: two `siuo-eval judge` processes at once on one output or one cache pay
for each judge call once (output lock in siuo_task/commands/output_lock.py, claims in the judge cache).

Real processes against the loopback judge. The judge holds its replies behind a gate until the
test has seen both processes reach the point under test, so the overlap does not depend on
timing; the gate only delays replies, every reply is the server's usual one.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import IO, Any

from siuo_task.judge.cache import VerdictCache
from tests.helpers.cli_runs import authors_rows, judge_env, no_secret_in, read_run, verdicts, write_json
from tests.helpers.judge_server import JudgeServer

ITEMS = 18  # authors_rows(): two items of each of the nine categories
RESPONSES = 3
REQUESTS = ITEMS * RESPONSES * 2  # a safety and an effectiveness request per response, all distinct
HANG_GUARD_S = 120  # only ends a hung test; nothing is asserted on time
# The test judge refuses some texts (about one in seven): judge errors, and no stop for them.
SETTINGS = {"SIUO_JUDGE_CONCURRENCY": "4", "SIUO_JUDGE_DECLINE_STOP": "off", "SIUO_JUDGE_NO_VERDICT_STOP": "off"}


class Gate:
    """Holds every judge reply until opened; counts the requests that reached the server."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self._lock = threading.Lock()
        self.arrived = 0

    def plan(self, kind: str, response: str, attempt: int) -> None:
        with self._lock:
            self.arrived += 1
        self.opened.wait(HANG_GUARD_S)
        return None  # the usual reply

    def wait_for(self, count: int) -> None:
        _until(lambda: self.arrived >= count, f"{count} request(s) at the judge")


def _until(condition: object, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def _start(source: Path, output: Path, env: dict[str, str], stderr: IO[str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "siuo_task.commands.cli", "judge", str(source), "--output", str(output)]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)


def _complete(folder: Path, server: JudgeServer) -> dict[str, Any]:
    """The run's results; every response judged, its only judge errors the judge's refusals."""
    results, samples = read_run(folder)
    assert len(samples) == ITEMS and all(len(s["siuo"]["responses"]) == RESPONSES for s in samples)
    refused = sum(1 for exchange in server.log.exchanges if exchange.intended is None)
    assert results["judge_errors"] == results["usage"]["declines"] == refused > 0
    return results


def test_second_judge_on_the_same_output_waits_and_pays_nothing(small_data_dir: Path, tmp_path: Path) -> None:
    source = write_json(tmp_path / "authors.json", authors_rows(2, RESPONSES))
    output, cache = tmp_path / "out", tmp_path / "cache.sqlite3"
    gate = Gate()
    with JudgeServer(reply_for=gate.plan) as server:
        env = judge_env(small_data_dir, server.base_url, cache, **SETTINGS)
        with open(tmp_path / "first.err", "w") as first_err, open(tmp_path / "second.err", "w") as second_err:
            first = _start(source, output, env, first_err)
            gate.wait_for(1)  # its probe is at the judge: it holds the output
            # Another cache: waiting would spare no call, so it refuses at once, naming the holder.
            other_env = {**env, "SIUO_JUDGE_CACHE": str(tmp_path / "other.sqlite3")}
            refused = subprocess.run(
                [sys.executable, "-m", "siuo_task.commands.cli", "judge", str(source), "--output", str(output)],
                env=other_env,
                capture_output=True,
                text=True,
                timeout=HANG_GUARD_S,
            )
            second = _start(source, output, env, second_err)
            _until(lambda: "waiting for it to end" in (tmp_path / "second.err").read_text(), "the second to wait")
            gate.opened.set()
            # 1: the judge's refusals are judge errors (the same in both).
            assert first.wait(HANG_GUARD_S) == 1, (tmp_path / "first.err").read_text()
            assert second.wait(HANG_GUARD_S) == 1, (tmp_path / "second.err").read_text()
    assert refused.returncode == 2 and refused.stdout == ""
    [line] = [line for line in refused.stderr.splitlines() if line.startswith("siuo-eval: error:")]
    assert f"pid {first.pid} on {socket.gethostname()}" in line and str(cache) in line
    assert "choose another --output" in line and "wait for it to end" in line
    # Every request graded once, by the first; the second found each verdict in the cache, and
    # each refusal in the first's claims (refusals are no verdicts, so they are not cached).
    assert len(server.attempts) == REQUESTS and set(server.attempts.values()) == {1}
    second_results = _complete(output, server)
    assert second_results["usage"]["calls"] == 0 and second_results["usage"]["cache_hits"] == REQUESTS
    # The first's files were kept aside, not overwritten; both say the same.
    [kept] = output.glob("samples.jsonl.*.bak")
    first_samples = [json.loads(line) for line in kept.read_text().splitlines()]
    assert len(first_samples) == ITEMS
    assert verdicts(read_run(output)[1]) == verdicts(first_samples)
    assert not (tmp_path / "other.sqlite3").exists()
    no_secret_in(tmp_path, refused.stderr)


def test_two_judges_sharing_a_cache_on_nfs_grade_each_request_once(small_data_dir: Path, tmp_path: Path) -> None:
    """Two outputs, one cache on a (pretended) NFS home: the engines' claims in the cache."""
    source = write_json(tmp_path / "authors.json", authors_rows(2, RESPONSES))
    home = tmp_path / "home"
    cache = home / ".cache" / "judge.sqlite3"
    gate = Gate()
    with JudgeServer(reply_for=gate.plan, latency_s=0.02) as server:
        nfs = f"{home}=nfs4,vers=4.2,local_lock=none"
        env = judge_env(small_data_dir, server.base_url, cache, **SETTINGS, SIUO_JUDGE_FS_MOUNTS=nfs)
        with open(tmp_path / "a.err", "w") as a_err, open(tmp_path / "b.err", "w") as b_err:
            first = _start(source, tmp_path / "out-a", env, a_err)
            gate.wait_for(1)  # the first's probe, its request claimed
            second = _start(source, tmp_path / "out-b", env, b_err)
            gate.wait_for(2)  # the second's probe: another request, since the first one is claimed
            gate.opened.set()
            assert first.wait(HANG_GUARD_S) == 1, (tmp_path / "a.err").read_text()
            assert second.wait(HANG_GUARD_S) == 1, (tmp_path / "b.err").read_text()
    assert len(server.attempts) == REQUESTS and set(server.attempts.values()) == {1}
    a, b = _complete(tmp_path / "out-a", server), _complete(tmp_path / "out-b", server)
    assert a["usage"]["calls"] + b["usage"]["calls"] == REQUESTS
    assert verdicts(read_run(tmp_path / "out-a")[1]) == verdicts(read_run(tmp_path / "out-b")[1])
    # The cache stayed where it was configured, in a rollback journal (WAL cannot span hosts), and said so.
    for err in ("a.err", "b.err"):
        assert "uses a rollback journal" in (tmp_path / err).read_text()
    assert not cache.with_name(cache.name + "-wal").exists()


_HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from siuo_task.judge.cache import VerdictCache
    cache = VerdictCache(Path(sys.argv[1]), claim_ttl_s=float(sys.argv[2]))
    assert cache.claim("key-1") is None
    print("claimed", flush=True)
    if sys.argv[3] == "crash":
        os._exit(0)  # no release, no close: like a killed process
    time.sleep(600)
    """
)


def _holder(cache: Path, ttl_s: float, how: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(cache), str(ttl_s), how], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "claimed"
    return process


def _expiry(cache: Path) -> float:
    with closing(sqlite3.connect(cache)) as db:
        return float(db.execute("SELECT expires FROM claims WHERE key = 'key-1'").fetchall()[0][0])


def test_a_claim_ends_with_its_process_or_its_heartbeat(tmp_path: Path) -> None:
    cache_path = tmp_path / "cache.sqlite3"
    cache = VerdictCache(cache_path)
    # A crashed owner on this host: its claim is free at once (its pid is gone).
    crashed = _holder(cache_path, 30.0, "crash")
    crashed.wait(HANG_GUARD_S)
    assert cache.claim("key-1") is None
    cache.release("key-1")
    # A live owner keeps its claim by its heartbeat, which pushes the expiry forward ...
    live = _holder(cache_path, 1.5, "live")
    try:
        holder = cache.claim("key-1")
        assert holder is not None and holder.pid == live.pid and holder.host == socket.gethostname()
        first = _expiry(cache_path)
        _until(lambda: _expiry(cache_path) > first, "a heartbeat")
        assert cache.claim("key-1") is not None
        # ... and a stopped one (as a host that went away) loses it when the heartbeat stops.
        os.kill(live.pid, signal.SIGSTOP)
        _until(lambda: cache.claim("key-1") is None, "the stopped owner's claim to expire")
    finally:
        live.kill()
        live.wait()
    cache.close()
