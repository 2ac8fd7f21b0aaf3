"""siuo_mcq_circular for Inspect: one sample per (item, rotation); scoring and numbers are the core's.

Each sample is one rotation of one item (``siuo_task.benchmark.circular.rotate``); its score reads the
letter from the final answer (the reasoning trace split off, as siuo_mcq does) and logs, under
``VALUES_KEY``, the rotation's values exactly as lmms-eval's process_results returns them
(``siuo_task.benchmark.circular.rotation_values``: the rotation's cell, ``RotationAnswer.to_dict()``,
under each metric name it counts for, and under ``RECORD_KEY``). The metric reduces them with
the core's reducers (``CIRCULAR_REDUCERS``, via ``reduce_values``), so the numbers equal the
lmms-eval task's for the same responses, and a report rebuilds them from the log alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from inspect_ai.scorer import Metric, SampleScore, Score, Scorer, Target, metric, scorer
from inspect_ai.solver import TaskState

from siuo_task.adapters.inspect_ai.responses import response_text
from siuo_task.adapters.inspect_ai.scoring import VALUES_KEY, numeric_metrics
from siuo_task.harness.api import (
    CIRCULAR_REDUCERS,
    Settings,
    answer_rotation,
    reduce_values,
    rotate,
    rotation_values,
    split_reasoning,
)


def circular_sample_id(question_id: int, rotation: int) -> str:
    """The sample id of one rotation of one item: "<question_id>-<rotation>"."""
    return f"{question_id}-{rotation}"


def circular_metrics(values: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Every siuo_mcq_circular metric, as numbers (Inspect's rule: an undefined value, e.g. a
    category with no complete item, is left out).

    Args:
        values: one ``rotation_values`` per answered (item, rotation), in any order.
    """
    return numeric_metrics(reduce_values(values, CIRCULAR_REDUCERS))


@metric(name="siuo_circular")
def siuo_circular_metrics() -> Metric:
    """Circular accuracy (with stderr and 95% CI), per category, unparsed rate, incomplete
    items, letter use and constant-letter baselines, reduced by the core from the logged values."""

    def compute(scores: list[SampleScore]) -> dict[str, float]:
        return circular_metrics(
            s.score.metadata[VALUES_KEY] for s in scores if s.score.metadata and VALUES_KEY in s.score.metadata
        )

    return compute


@scorer(metrics=[siuo_circular_metrics()], name="siuo_circular_letter")
def siuo_circular_letter(data_dir: str | None = None) -> Scorer:
    """Parse one rotation's letter against its rotated options (unparseable: wrong, and counted).

    The sample's value is 1.0 when this rotation was answered right; an item counts only in
    the metrics, once all four of its rotations are in.

    Args:
        data_dir: the SIUO data folder (default: $SIUO_DATA_DIR, else the hub).
    """
    settings = Settings.from_env()
    items = {item.question_id: item for item in settings.data(data_dir).mcq}
    tags = settings.reasoning.tags  # read before any generation: a bad value stops the build

    async def score(state: TaskState, target: Target) -> Score:
        question = rotate(items[int(state.metadata["question_id"])], int(state.metadata["rotation"]))
        answer = answer_rotation(question, split_reasoning(response_text(state.output), tags).answer)
        return Score(
            value=float(answer.correct),
            answer=answer.parsed,
            explanation=None if answer.parsed else "no letter could be read from the answer",
            metadata={VALUES_KEY: rotation_values(answer)},
        )

    return score
