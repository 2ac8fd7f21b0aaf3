from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.fixture_data import per_category, real_items, write_data_dir
from tests.helpers.judge_server import JudgeServer

# The modules that take longest (each alone, on the 2-core machine), longest first. pytest-xdist
# (--dist loadfile, scripts/test.sh) hands whole modules to its workers in collection order, so
# these start first and no long module is left running alone at the end. A module missing here
# only runs later; the measured times are in docs/development.md.
LONGEST_FIRST = (
    "test_lmms_eval_e2e",
    "test_broken_judge",
    "test_harness_matrix",
    "test_lm_eval_e2e",
    "test_inspect_grader_role",
    "test_harness_exits",
    "test_judge_panel",
    "test_report",
    "test_inspect_e2e",
    "test_judge_health",
    "test_same_numbers",
    "test_task_hooks",
    "test_not_sampled",
    "test_vlmevalkit",
    "test_judge_rate_limits",
    "test_sweep",
    "test_wheel",
    "test_build",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    # A stable sort: the tests of one module keep their order, the other modules theirs.
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


@pytest.fixture(scope="session")
def full_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All 167 real items with generated stand-in images."""
    return write_data_dir(tmp_path_factory.mktemp("siuo_full"))


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real items from each of the 9 categories (18 items)."""
    gen, _ = real_items()
    return write_data_dir(tmp_path_factory.mktemp("siuo_small"), per_category(gen, 2))


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.helpers.tiny_llava import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava"))


# Where a tool falls back to $HOME when these are unset: the judge cache (XDG_CACHE_HOME),
# matplotlib's font cache and config, Hugging Face hub/datasets caches, Inspect's data folder.
HOME_FALLBACKS = ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "HF_HOME", "MPLCONFIGDIR")


@pytest.fixture(scope="session", autouse=True)
def _private_home_caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Nothing the suite runs writes under the user's $HOME. Session-scoped so that session and
    module fixtures, which are set up before any function-scoped fixture, already see it."""
    root = tmp_path_factory.mktemp("home_caches")
    with pytest.MonkeyPatch.context() as patch:
        for name in HOME_FALLBACKS:
            patch.setenv(name, str(root / name.lower()))
        patch.setenv("SIUO_JUDGE_CACHE", str(root / "judge-cache.sqlite3"))
        yield


@pytest.fixture(autouse=True)
def _private_judge_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's judge cache, nor another test's."""
    monkeypatch.setenv("SIUO_JUDGE_CACHE", str(tmp_path / "judge-cache.sqlite3"))


@pytest.fixture
def judge_server():
    with JudgeServer() as server:
        yield server
