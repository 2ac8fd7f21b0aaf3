"""``siuo_task.vlmeval``: the old home of the VLMEvalKit adapter, kept so that
``python -m siuo_task.vlmeval`` and existing imports keep working; the adapter lives in
``siuo_task.adapters.vlmevalkit``."""

from siuo_task.adapters.vlmevalkit import DATASET_NAMES, GEN_PAPER, GEN_SINGLE, MCQ, MCQ_CIRCULAR, register

__all__ = ["DATASET_NAMES", "GEN_PAPER", "GEN_SINGLE", "MCQ", "MCQ_CIRCULAR", "register"]
