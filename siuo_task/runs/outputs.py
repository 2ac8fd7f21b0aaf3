"""Checks every command makes on what it will write, before it reads or calls anything, so a
wrong ``--output`` costs no judge call and no time."""

from __future__ import annotations

import os
from pathlib import Path

from siuo_task.errors import OutputError


def _first_existing(path: Path) -> Path:
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_output_folder(path: Path, flag: str = "--output") -> None:
    """``path`` is, or can be made as, a folder this process may write into.

    Raises:
        OutputError: naming the path and what is in the way.
    """
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} '{path}' is an existing file, not a folder; choose a folder (it was left unchanged)")
    _check_writable(path, flag)


def check_output_file(path: Path, flag: str = "--output") -> None:
    """``path`` is, or can be made as, a file this process may write.

    Raises:
        OutputError: naming the path and what is in the way.
    """
    if path.is_dir():
        raise OutputError(f"{flag} '{path}' is a folder; give a file name (e.g. {path / 'out.json'})")
    _check_writable(path.parent if not path.exists() else path, flag)


def _check_writable(path: Path, flag: str) -> None:
    existing = _first_existing(path)
    if existing != path.absolute() and not existing.is_dir():
        raise OutputError(f"{flag} '{path}' cannot be made: '{existing}' is a file, not a folder")
    if not os.access(existing, os.W_OK):
        raise OutputError(f"{flag} '{path}' cannot be written: no write permission in '{existing}'")
