"""The built wheel, installed apart from the source tree, runs lmms-eval's tasks on its own.

The wheel is built from a copy of the files a release is made of (so the build leaves nothing in
the checkout), installed with ``pip install --target``, and used with that folder first on
PYTHONPATH from a working directory outside the repository: the tasks must be found through the
wheel's own entry points, with no --include_path. The venv's editable install of siuo-task is
still on sys.path behind it, so the test also checks that the wheel's module, metadata and task
YAMLs are the ones in use.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers.cli_runs import SECRET
from tests.helpers.judge_server import SERVED_MODEL, JudgeServer

REPO = Path(__file__).resolve().parent.parent
# What a release is made of (pyproject.toml names no other file).
SOURCES = ("pyproject.toml", "setup.cfg", "README.md", "siuo_task", "configs")


def _pip(*args: str | Path, cwd: Path) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *map(str, args)]
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(command)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the folder it is installed in)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    # No build isolation: the build works offline with the venv's setuptools (the dev extra
    # asks for the version pyproject.toml's build-system needs).
    _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", root / "dist", src, cwd=root)
    (wheel,) = (root / "dist").glob("siuo_task-*.whl")
    _pip("install", "--no-deps", "-q", "--target", root / "site", wheel, cwd=root)
    return wheel, root / "site"


def _source_files() -> set[str]:
    """Every file of the package as it should sit in the wheel (configs/ is siuo_task/configs/)."""
    files = set()
    for top, prefix in (("siuo_task", "siuo_task"), ("configs", "siuo_task/configs")):
        for path in (REPO / top).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.add(f"{prefix}/{path.relative_to(REPO / top).as_posix()}")
    return files


def test_the_wheel_holds_every_package_file_and_publishable_metadata(built: tuple[Path, Path]) -> None:
    wheel, _ = built
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
        meta = archive.read(metadata).decode()
        entries = archive.read(entry_points).decode()
    missing = sorted(_source_files() - names)
    assert not missing, f"not in the wheel (add the folder to [tool.setuptools] packages): {missing}"
    kept = ("siuo_task/adapters/vlmevalkit/reader.py", "siuo_task/runs/readers.py", "siuo_task/configs/eval_card.yaml")
    assert set(kept) <= names
    assert "License-Expression: Apache-2.0" in meta and "Description-Content-Type: text/markdown" in meta
    for group in ("[lmms_eval.models]", "[inspect_ai]", "[siuo_task.readers]", "[siuo_task.task_folders]"):
        assert group in entries


def test_twine_accepts_the_wheel(built: tuple[Path, Path]) -> None:
    pytest.importorskip("twine", reason="twine comes with the dev extra (scripts/install.sh)")
    wheel, _ = built
    command = [sys.executable, "-m", "twine", "check", "--strict", str(wheel)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "PASSED" in proc.stdout, proc.stdout + proc.stderr


def _wheel_env(site: Path, data_dir: Path, hf_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIUO_", "OPENAI_", "PYTHON"))}
    env.update(PYTHONPATH=str(site), SIUO_DATA_DIR=str(data_dir), SIUO_JUDGE_CACHE="off")
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


WHERE = """
import json
from importlib.metadata import distribution, entry_points
import siuo_task
import lmms_eval.models  # loads the lmms_eval.models entry points, as the CLI does
from lmms_eval.tasks import TaskManager
index = TaskManager().task_index
plugins = [ep for ep in entry_points(group="lmms_eval.models") if ep.name == "siuo_task"]
print(json.dumps({
    "module": siuo_task.__file__,
    "metadata": str(distribution("siuo-task")._path),
    "plugins": [str(ep.dist._path) for ep in plugins],
    "yaml": {task: str(index[task]["yaml_path"]) for task in ("siuo_gen_greedy", "siuo_mcq")},
}))
"""


def test_lmms_eval_runs_the_tasks_from_the_installed_wheel(
    built: tuple[Path, Path], small_data_dir: Path, tmp_path: Path
) -> None:
    _, site = built
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = _wheel_env(site, small_data_dir, tmp_path / "hf")
    where = subprocess.run([sys.executable, "-c", WHERE], cwd=workdir, env=env, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr[-3000:]
    found = json.loads(where.stdout.strip().splitlines()[-1])
    # The wheel's module, its dist-info (not the editable install's), one plugin entry point
    # from it, and the task YAMLs of its folder.
    assert Path(found["module"]).is_relative_to(site), found
    assert Path(found["metadata"]).parent == site and Path(found["metadata"]).name.endswith(".dist-info"), found
    assert [Path(path).parent for path in found["plugins"]] == [site], found
    for task, yaml_path in found["yaml"].items():
        assert Path(yaml_path) == site / "siuo_task/adapters/lmms_eval/tasks/siuo" / f"{task}.yaml", (task, yaml_path)

    out = tmp_path / "out"
    command = [sys.executable, "-m", "lmms_eval", "--model", "dummy", "--model_args", "response=The answer is (A)."]
    command += ["--tasks", "siuo_gen_greedy,siuo_mcq", "--output_path", str(out)]
    with JudgeServer() as server:
        env.update(SIUO_JUDGE_BASE_URL=server.base_url, SIUO_JUDGE_API_KEY=SECRET)
        proc = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
        judged = len(server.log.exchanges)
    results_files = sorted(out.glob("**/*_results.json"))
    assert proc.returncode == 0 and results_files, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(results_files[-1].read_text())
    gen, mcq = results["results"]["siuo_gen_greedy"], results["results"]["siuo_mcq"]
    assert 0 <= gen["safe_rate,none"] <= 100 and 0 <= gen["effective_rate,none"] <= 100
    assert 0 <= mcq["accuracy,none"] <= 100 and mcq["unparsed_rate,none"] == 0
    assert results["siuo"]["siuo_gen_greedy"]["judge_model"] == SERVED_MODEL
    assert judged >= 18 * 2  # safety and effectiveness for each of the 18 items, plus the check
    assert SECRET not in proc.stdout + proc.stderr + results_files[-1].read_text()
