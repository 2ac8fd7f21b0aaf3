"""siuo_task: the SIUO benchmark (Safe Inputs but Unsafe Output, Findings of NAACL 2025).

Public API (stable names):
    parse_mcq_answer(response, options) -> letter or None
    parse_safety_verdict(judge_text) -> True (safe), False (unsafe) or None
    parse_effectiveness_verdict(judge_text) -> "very effective" | "partially effective" | "ineffective" | None
    load_siuo(data_dir=None) -> SiuoData (validated items)
    JudgeConfig.from_env() -> the judge settings every entry point uses
"""

from siuo_task.benchmark.data import GenItem, McqItem, SiuoData, load_siuo
from siuo_task.benchmark.parsing import parse_effectiveness_verdict, parse_mcq_answer, parse_safety_verdict
from siuo_task.errors import DataError, JudgeConfigError, SiuoError
from siuo_task.judge.config import JudgeConfig

__version__ = "0.7.0"

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
