"""SIUO for VLMEvalKit: the paper protocol as VLMEvalKit datasets, scored by siuo_task's core.

VLMEvalKit has no plugin mechanism: ``build_dataset`` walks the module-level list
``vlmeval.dataset.DATASET_CLASSES``. ``register()`` appends our classes (and their names to
``SUPPORTED_DATASETS``) before VLMEvalKit's runner starts; ``python -m siuo_task.vlmeval``
does that and then runs VLMEvalKit's own ``run.py`` main with the usual arguments.

Importing this module does not import VLMEvalKit; ``register()`` does.
"""

from __future__ import annotations

from siuo_task.adapters.vlmevalkit.names import DATASET_NAMES, GEN_PAPER, GEN_SINGLE, MCQ, MCQ_CIRCULAR

__all__ = ["DATASET_NAMES", "GEN_PAPER", "GEN_SINGLE", "MCQ", "MCQ_CIRCULAR", "register"]


def register() -> tuple[str, ...]:
    """Add the SIUO dataset classes to VLMEvalKit (idempotent); returns their dataset names."""
    import vlmeval.dataset as vlm_datasets

    from siuo_task.adapters.vlmevalkit.datasets import SiuoGenDataset, SiuoMcqDataset

    for cls in (SiuoGenDataset, SiuoMcqDataset):
        if cls not in vlm_datasets.DATASET_CLASSES:
            vlm_datasets.DATASET_CLASSES.append(cls)
    for name in DATASET_NAMES:
        if name not in vlm_datasets.SUPPORTED_DATASETS:
            vlm_datasets.SUPPORTED_DATASETS.append(name)
    return DATASET_NAMES
