"""The paper's sampling for API models on the 3-sample dataset.

VLMEvalKit's API model classes default to temperature 0, so without a word the three
"samples" per item of ``SafeInputsUnsafeOutput_GEN3`` would be one greedy answer asked three
times. The paper samples at temperature 1.0 (siuo_gen's generation settings in
configs/eval_card.yaml). One model object serves every dataset of a run (MCQ must stay greedy),
so the temperature is given per call, for GEN3 only, and only when the user chose none
(``--temperature``). Local model classes decode as they are built; a run whose
samples come out identical is flagged when it is scored.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from siuo_task.adapters.vlmevalkit.names import GEN_PAPER, TASK_OF_DATASET
from siuo_task.harness.api import cli_option, generation

PAPER_TEMPERATURE = generation(TASK_OF_DATASET[GEN_PAPER]).temperature
_MARK = "_siuo_task_sampling"

logger = logging.getLogger(__name__)


def sample_gen3_api_calls() -> bool:
    """Give API models the paper's temperature on GEN3 calls unless --temperature was set; True if applied."""
    from vlmeval.api.base import BaseAPI

    if cli_option("--temperature") is not None:
        return False
    if getattr(BaseAPI.generate, _MARK, False):
        return True
    original = BaseAPI.generate

    @functools.wraps(original)
    def generate(self: Any, message: Any, **kwargs: Any) -> Any:
        if kwargs.get("dataset") == GEN_PAPER and "temperature" not in kwargs:
            kwargs["temperature"] = PAPER_TEMPERATURE
        return original(self, message, **kwargs)

    setattr(generate, _MARK, True)
    BaseAPI.generate = generate  # type: ignore[method-assign]
    return True
