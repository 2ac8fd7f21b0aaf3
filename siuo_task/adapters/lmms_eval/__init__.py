"""lmms-eval adapter: the task YAMLs, their hooks, and task-folder registration."""

from __future__ import annotations

from pathlib import Path


def tasks_dir() -> Path:
    """The folder to pass to ``lmms-eval --include_path`` (not needed once installed)."""
    return Path(__file__).resolve().parent / "tasks"
