"""`siuo-eval` commands, run as a user would."""

from __future__ import annotations

from pathlib import Path

from siuo_task.adapters.lmms_eval import tasks_dir
from tests.helpers.cli_runs import siuo_eval


def test_include_path_prints_the_task_folder() -> None:
    proc = siuo_eval("include-path")
    assert proc.returncode == 0
    assert Path(proc.stdout.strip()) == tasks_dir()
    assert (Path(proc.stdout.strip()) / "siuo" / "siuo_gen.yaml").is_file()


def test_check_reports_counts(small_data_dir: Path) -> None:
    proc = siuo_eval("check", "--data-dir", str(small_data_dir), "--skip-judge")
    assert proc.returncode == 0, proc.stderr
    assert "18 open-ended and 18 multiple-choice items" in proc.stdout


def test_check_names_the_broken_item(small_data_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    (broken / "images").mkdir(parents=True)
    for name in ("siuo_gen.json", "siuo_mcqa.json"):
        (broken / name).write_text((small_data_dir / name).read_text())
    proc = siuo_eval("check", "--data-dir", str(broken), "--skip-judge")
    assert proc.returncode == 2
    assert "item 1001: image 'S-01.png' not found" in proc.stderr


def test_check_requires_judge_settings(small_data_dir: Path) -> None:
    proc = siuo_eval("check", "--data-dir", str(small_data_dir), env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert "no judge API key" in proc.stderr
