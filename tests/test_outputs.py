"""Every command checks what it will write before it reads or calls anything: an --output in the
way is one line naming it, exit 2, no judge call, and the file in the way is left unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli_runs import authors_rows, judge_env, write_json
from tests.helpers.in_process import siuo_eval_in_process
from tests.helpers.judge_server import JudgeServer

IN_THE_WAY = b"a person's notes\n"


@pytest.fixture
def in_the_way(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_bytes(IN_THE_WAY)
    return path


@pytest.mark.parametrize("command", ["judge", "report"])
def test_output_naming_a_file_stops_at_once(
    command: str, in_the_way: Path, small_data_dir: Path, tmp_path: Path
) -> None:
    source = write_json(tmp_path / "in" / "run.json", authors_rows())
    with JudgeServer() as server:
        proc = siuo_eval_in_process(
            command, source, "--output", in_the_way, env=judge_env(small_data_dir, server.base_url, "off")
        )
        calls = len(server.log.exchanges)
    assert proc.returncode == 2 and calls == 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(in_the_way) in lines[0] and "is an existing file" in lines[0], proc.stderr
    assert in_the_way.read_bytes() == IN_THE_WAY


@pytest.mark.parametrize(
    "args",
    [
        ["audit", "--output", "{file}/sub"],
        ["build", "--images", "{tmp}", "--output", "{file}"],
        ["export-review", "{tmp}/in", "--output", "{tmp}"],
        ["agreement", "{tmp}/review.csv", "--output", "{tmp}"],
    ],
)
def test_other_commands_check_their_output_first(
    args: list[str], in_the_way: Path, small_data_dir: Path, tmp_path: Path
) -> None:
    argv = [arg.format(file=in_the_way, tmp=tmp_path) for arg in args]
    with JudgeServer() as server:
        proc = siuo_eval_in_process(*argv, env=judge_env(small_data_dir, server.base_url, "off"))
        calls = len(server.log.exchanges)
    assert proc.returncode == 2 and calls == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--output" in lines[0], proc.stderr
    assert in_the_way.read_bytes() == IN_THE_WAY


def test_an_empty_folder_says_what_was_looked_at(small_data_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.json").write_text('{"not": "a run"}')
    (empty / "20261201_000000_results.json").write_text('{"results": {}}')
    with JudgeServer() as server:
        proc = siuo_eval_in_process(
            "judge", empty, "--output", tmp_path / "out", env=judge_env(small_data_dir, server.base_url, "off")
        )
    assert proc.returncode == 2
    assert "see the notes above" not in proc.stderr
    assert f"'{empty / 'notes.json'}' skipped: not a SIUO input" in proc.stderr
    assert f"'{empty / '20261201_000000_results.json'}' skipped: an lmms-eval results file" in proc.stderr
    assert f"'{empty}' holds no SIUO generation inputs (2 file(s) looked at, listed above)" in proc.stderr
