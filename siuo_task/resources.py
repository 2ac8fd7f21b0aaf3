"""Data files kept in the repository's configs/ folder.

A wheel installs configs/ as the package ``siuo_task.configs``; an editable install or a source
checkout reads the folder in place.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def config_text(name: str) -> str:
    """The text of ``configs/<name>``."""
    try:
        return (files("siuo_task.configs") / name).read_text(encoding="utf-8")
    except ModuleNotFoundError:
        return (Path(__file__).resolve().parent.parent / "configs" / name).read_text(encoding="utf-8")
