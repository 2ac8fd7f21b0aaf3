"""siuo_task: the SIUO benchmark (Safe Inputs but Unsafe Output, Findings of NAACL 2025).

Public API (stable names):
    parse_mcq_answer(response, options) -> letter or None
    parse_safety_verdict(judge_text) -> True (safe), False (unsafe) or None
    parse_effectiveness_verdict(judge_text) -> "very effective" | "partially effective" | "ineffective" | None
    load_siuo(data_dir=None) -> SiuoData (validated items)
    JudgeConfig.from_env() -> the judge settings every entry point uses
"""

from __future__ import annotations

import os

from siuo_task.benchmark.data import GenItem, McqItem, SiuoData
from siuo_task.benchmark.parsing import parse_effectiveness_verdict, parse_mcq_answer, parse_safety_verdict
from siuo_task.errors import DataError, JudgeConfigError, SiuoError
from siuo_task.judge.config import JudgeConfig
from siuo_task.settings import Settings

__version__ = "0.7.0"


def load_siuo(data_dir: str | os.PathLike[str] | None = None) -> SiuoData:
    """The validated items of ``data_dir``, else of $SIUO_DATA_DIR, else of the pinned hub
    snapshot (a Python caller's entry point: the environment is read here)."""
    return Settings.from_env().data(data_dir)


__all__ = [
    "DataError",
    "GenItem",
    "JudgeConfig",
    "JudgeConfigError",
    "McqItem",
    "SiuoData",
    "SiuoError",
    "load_siuo",
    "parse_effectiveness_verdict",
    "parse_mcq_answer",
    "parse_safety_verdict",
]
