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


def test_version_and_plain_help() -> None:
    from siuo_task import __version__

    version = siuo_eval("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"siuo-eval {__version__}"
    top = siuo_eval("--help").stdout
    assert "``" not in top and "siuo-eval" in top
    report = siuo_eval("report", "--help").stdout
    assert "--output OUTPUT" in report and "report.md" in report.split("--output OUTPUT", 1)[1]


def test_build_steps_have_their_own_help() -> None:
    review = siuo_eval("build", "review", "--help")
    finalize = siuo_eval("build", "finalize", "--help")
    assert review.returncode == finalize.returncode == 0
    assert review.stdout.startswith("usage: siuo-eval build review BUILD_DIR")
    assert "--images" not in review.stdout and "--merge-with" not in review.stdout
    assert finalize.stdout.startswith("usage: siuo-eval build finalize REVIEWED.csv --output DATA_DIR")
    assert "--images" not in finalize.stdout and "--merge-with" in finalize.stdout
    build = siuo_eval("build", "--help").stdout
    # Defaults are the pinned snapshots the code uses, not family names.
    assert "gpt-4o-2024-08-06" in build and "gpt-4o-mini-2024-07-18" in build


def test_a_judge_cache_that_cannot_be_opened_is_named_with_the_fix(
    small_data_dir: Path, tmp_path: Path, judge_server
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SIUO_JUDGE_BASE_URL": judge_server.base_url,
        "SIUO_JUDGE_CACHE": str(tmp_path),  # a folder, not a file
    }
    proc = siuo_eval("check", "--data-dir", str(small_data_dir), env=env)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"the judge cache '{tmp_path}' cannot be opened (it is a folder)" in proc.stderr
    assert "SIUO_JUDGE_CACHE=off" in proc.stderr
