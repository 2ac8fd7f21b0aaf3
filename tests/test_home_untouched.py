"""The suite's own promise: a run of the CLI, with the environment every test gets, writes nothing
under $HOME (the judge cache follows XDG_CACHE_HOME, which tests/conftest.py points elsewhere).
A user's run, with no XDG_CACHE_HOME, keeps its judge cache under ~/.cache/siuo-task."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.helpers.cli_runs import authors_rows, judge_env, siuo_eval, write_json
from tests.helpers.judge_server import JudgeServer


def test_judge_report_and_check_leave_home_untouched(small_data_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    source = write_json(tmp_path / "authors.json", authors_rows(count_per_category=1, responses=1))
    with JudgeServer() as server:
        env = judge_env(small_data_dir, server.base_url, "unused", HOME=str(home))
        del env["SIUO_JUDGE_CACHE"]  # the default cache: $XDG_CACHE_HOME/siuo-task/..., else ~/.cache
        judged = siuo_eval("judge", source, "--output", tmp_path / "judged", env=env)
        again = siuo_eval("judge", source, "--output", tmp_path / "again", env=env)
        checked = siuo_eval("check", env=env)
    reported = siuo_eval("report", tmp_path / "judged", "--output", tmp_path / "report", env=env)
    for proc in (judged, again, reported):
        assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1: the test judge declines some texts
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert (tmp_path / "report" / "report.md").is_file()
    # The default cache was used (the second run is served from it), and it is not under $HOME.
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "siuo-task" / "judge-cache.sqlite3"
    assert cache.is_file() and not cache.is_relative_to(home)
    usage = json.loads((tmp_path / "again" / "results.json").read_text())["usage"]
    assert usage["cache_hits"] > 0
    assert [str(path.relative_to(home)) for path in home.rglob("*")] == []


def test_a_users_check_keeps_the_judge_cache_under_home(small_data_dir: Path, tmp_path: Path) -> None:
    """What a user's machine gets (docs/judge.md): with XDG_CACHE_HOME unset, the default judge
    cache is ~/.cache/siuo-task/judge-cache.sqlite3, and `check` writes nothing else under HOME."""
    home = tmp_path / "home"
    home.mkdir()
    with JudgeServer() as server:
        env = judge_env(small_data_dir, server.base_url, "unused", HOME=str(home))
        del env["SIUO_JUDGE_CACHE"], env["XDG_CACHE_HOME"]
        checked = siuo_eval("check", env=env)
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert (home / ".cache" / "siuo-task" / "judge-cache.sqlite3").is_file()
    written = [path for path in home.rglob("*") if path.is_file()]
    assert written and all(path.is_relative_to(home / ".cache" / "siuo-task") for path in written), written
