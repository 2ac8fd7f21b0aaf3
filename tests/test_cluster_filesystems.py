"""The judge cache and the machine-wide limit files on a cluster's file systems (NFS, Lustre,
GPFS ...): detected from the mount table, each handled the safe way and said in one line.

SIUO_JUDGE_FS_MOUNTS adds mount table entries (the seam: the folders here are on the test
machine's local disk, pretended to be NFS or Lustre); everything after the mount table is the
code every user runs. Two processes sharing a cache on (pretended) NFS: test_one_writer.py.
"""

from __future__ import annotations

import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

import pytest

from siuo_task.benchmark.data import load_siuo
from siuo_task.benchmark.scoring import gen_judge_requests
from siuo_task.commands.output_lock import LOCK_NAME, output_lock
from siuo_task.errors import JudgeConfigError
from siuo_task.judge.cache import CachedReply, VerdictCache
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine
from siuo_task.judge.filesystems import MOUNTS_VARIABLE, filesystem_of
from siuo_task.judge.limits import limits_dir
from tests.helpers.judge_server import JudgeServer

REPLY = CachedReply("[Safety Judgement:] True", "judge", 10, 2)


def _pretend(monkeypatch: pytest.MonkeyPatch, **mounts: str) -> None:
    """Pretend each folder (the keyword's value is 'FOLDER=TYPE,OPTIONS') is a mount."""
    monkeypatch.setenv(MOUNTS_VARIABLE, ";".join(mounts.values()))


def _journal_mode(path: Path) -> str:
    with closing(sqlite3.connect(path)) as db:
        return str(db.execute("PRAGMA journal_mode").fetchall()[0][0]).lower()


@pytest.mark.parametrize(
    ("spec", "network", "locks_span_hosts"),
    [
        ("nfs4,rw,vers=4.2,local_lock=none", True, True),
        ("nfs,vers=3,nolock", True, False),
        ("nfs4,vers=4.1,local_lock=all", True, False),
        ("lustre,rw,flock", True, True),
        ("lustre,rw,localflock", True, False),
        ("lustre,rw", True, False),
        ("gpfs,rw", True, True),
        ("beegfs,rw", True, False),
        ("fuse.sshfs,rw", True, False),
        ("cifs,rw", True, True),
        ("ext4,rw", False, True),
    ],
)
def test_file_system_and_its_locks_are_read_from_the_mount_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str, network: bool, locks_span_hosts: bool
) -> None:
    _pretend(monkeypatch, home=f"{tmp_path / 'home'}={spec}")
    # A folder not made yet is placed under the mount that will hold it; the longest mount point wins.
    fs = filesystem_of(tmp_path / "home" / "user" / ".cache")
    assert (fs.type, fs.mount_point) == (spec.split(",")[0], str((tmp_path / "home").resolve()))
    assert (fs.is_network, fs.locks_span_hosts) == (network, locks_span_hosts)
    assert filesystem_of(tmp_path / "elsewhere").mount_point != fs.mount_point


def test_the_kernel_mount_table_is_read(tmp_path: Path) -> None:
    assert filesystem_of(Path("/proc/self")).type == "proc"
    assert filesystem_of(tmp_path).mount_point != "/proc"


def test_cache_on_nfs_uses_a_rollback_journal_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "home" / "cache.sqlite3"
    # Made on a local disk first, in WAL, as by an earlier version: it leaves WAL on NFS.
    local = VerdictCache(path)
    local.put("key", "safety", REPLY)
    local.close()
    assert _journal_mode(path) == "wal"
    _pretend(monkeypatch, home=f"{tmp_path / 'home'}=nfs4,vers=4.2")
    cache = VerdictCache(path)
    assert cache.path == path and cache.get("key") == REPLY
    assert _journal_mode(path) == "delete"  # out of WAL (which alone is stored in the file)
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("siuo-task: the judge cache") and "nfs4" in line and "rollback journal" in line
    cache.put("other", "safety", REPLY)
    assert not path.with_name(path.name + "-wal").exists() and not path.with_name(path.name + "-shm").exists()
    assert path.with_name(path.name + "-journal").exists()  # the rollback journal, kept between writes


def test_cache_on_lustre_without_cluster_locks_moves_to_this_host(
    small_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scratch = tmp_path / "scratch"
    configured = scratch / "siuo" / "cache.sqlite3"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "node-local"))
    (tmp_path / "node-local").mkdir()
    _pretend(monkeypatch, scratch=f"{scratch}=lustre,rw,localflock")
    with JudgeServer(declines=False) as server:
        config = JudgeConfig(base_url=server.base_url, api_key="sk-test-0000", cache_path=configured)
        engine = JudgeEngine(config)
        try:
            item = load_siuo(small_data_dir).gen[0]
            outcomes = engine.grade_many(gen_judge_requests(item, ["a careful reply"]))
        finally:
            engine.close()
    assert all(outcome.verdict is not None for outcome in outcomes)
    # The verdicts are in a file on this host's local temporary folder, in WAL; nothing on Lustre.
    moved = engine.cache_path
    assert moved is not None and moved.is_relative_to(tmp_path / "node-local") and moved.suffix == ".sqlite3"
    assert _journal_mode(moved) == "wal" and not configured.exists()
    with closing(sqlite3.connect(moved)) as db:
        assert db.execute("SELECT COUNT(*) FROM verdicts").fetchall()[0][0] == len(outcomes)
    assert str(moved) in engine.kept()
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("siuo-task:")]
    assert str(configured) in line and str(moved) in line and "lustre" in line and "not shared" in line


def test_limit_files_leave_a_temporary_folder_on_shared_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scratch, runtime = tmp_path / "scratch", tmp_path / "run"
    scratch.mkdir()
    runtime.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    # Every system folder pretended to be network too, so the one local candidate is the test's.
    others = {name: f"{name}=nfs4,local_lock=all" for name in ("/dev/shm", "/tmp", "/var/tmp")}
    _pretend(monkeypatch, scratch=f"{scratch}=lustre,rw,flock", run=f"{runtime}=tmpfs,rw", **others)
    folder = limits_dir("http://judge.example/v1", "judge-a", 3)
    assert folder.is_relative_to(runtime) and folder.is_dir()
    [line] = capsys.readouterr().err.splitlines()
    assert str(scratch) in line and str(runtime) in line and "lustre" in line
    # No local folder at all: cluster-wide locks keep the files where they are, said so ...
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert limits_dir("http://judge.example/v1", "judge-b", 3).is_relative_to(scratch)
    assert "shared by every host" in capsys.readouterr().err
    # ... and without such locks there is no safe place: a clear error naming what to do.
    _pretend(monkeypatch, scratch=f"{scratch}=lustre,rw", **others)
    with pytest.raises(JudgeConfigError, match="set TMPDIR to a folder on a local disk"):
        limits_dir("http://judge.example/v1", "judge-c", 3)


def test_output_lock_says_when_locks_do_not_span_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch"
    _pretend(monkeypatch, scratch=f"{scratch}=lustre,rw,localflock")
    said: list[str] = []
    with output_lock(scratch / "out", [tmp_path / "cache.sqlite3"], said.append):
        assert (scratch / "out" / LOCK_NAME).is_file()
    [line] = said
    assert str(scratch / "out") in line and "lustre" in line and "would not be noticed" in line
    # Nothing was written: the lock file and the folder it made are gone.
    assert not (scratch / "out").exists()
