"""SIUO for EleutherAI's lm-evaluation-harness (lm-eval): siuo_gen, siuo_gen_greedy, siuo_mcq and
siuo_mcq_circular.

lm-eval has no task discovery hook for installed packages, so runs pass the task folder:
``lm_eval --include_path "$(siuo-eval include-path --harness lm-eval)" --tasks siuo_gen ...``.
Importing ``siuo_task`` never imports lm-eval.
"""

from __future__ import annotations

from pathlib import Path


def tasks_dir() -> Path:
    """The folder holding the SIUO task YAMLs for lm-eval's --include_path."""
    return Path(__file__).resolve().parent / "tasks"
