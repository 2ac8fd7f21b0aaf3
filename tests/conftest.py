from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.fixture_data import per_category, real_items, write_data_dir
from tests.helpers.judge_server import JudgeServer


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


@pytest.fixture(autouse=True)
def _private_judge_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's judge cache."""
    monkeypatch.setenv("SIUO_JUDGE_CACHE", str(tmp_path / "judge-cache.sqlite3"))


@pytest.fixture
def judge_server():
    with JudgeServer() as server:
        yield server
