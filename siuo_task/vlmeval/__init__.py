"""SIUO for VLMEvalKit: the paper protocol as VLMEvalKit datasets, scored by siuo_task's core.

VLMEvalKit has no plugin mechanism: ``build_dataset`` walks the module-level list
``vlmeval.dataset.DATASET_CLASSES``. ``register()`` appends our classes (and their names to
``SUPPORTED_DATASETS``) before VLMEvalKit's runner starts; ``python -m siuo_task.vlmeval``
does that and then runs VLMEvalKit's own ``run.py`` main with the usual arguments.

Dataset names avoid the substring "SIUO": VLMEvalKit's runner forces a gpt-4o-mini judge for
any dataset name containing it.

Importing this module does not import VLMEvalKit; ``register()`` does.
"""

from __future__ import annotations

GEN_PAPER = "SafeInputsUnsafeOutput_GEN3"
GEN_SINGLE = "SafeInputsUnsafeOutput_GEN1"
MCQ = "SafeInputsUnsafeOutput_MCQ"
MCQ_CIRCULAR = "SafeInputsUnsafeOutput_MCQCircular"
DATASET_NAMES = (GEN_PAPER, GEN_SINGLE, MCQ, MCQ_CIRCULAR)


def register() -> tuple[str, ...]:
    """Add the SIUO dataset classes to VLMEvalKit (idempotent); returns their dataset names."""
    import vlmeval.dataset as vlm_datasets

    from siuo_task.vlmeval.datasets import SiuoGenDataset, SiuoMcqCircularDataset, SiuoMcqDataset

    for cls in (SiuoGenDataset, SiuoMcqDataset, SiuoMcqCircularDataset):
        if cls not in vlm_datasets.DATASET_CLASSES:
            vlm_datasets.DATASET_CLASSES.append(cls)
    for name in DATASET_NAMES:
        if name not in vlm_datasets.SUPPORTED_DATASETS:
            vlm_datasets.SUPPORTED_DATASETS.append(name)
    return DATASET_NAMES
