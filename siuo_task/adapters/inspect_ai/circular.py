"""siuo_mcq_circular for Inspect: one sample per (item, rotation); scoring and numbers are the core's.

Each sample is one rotation of one item (``siuo_task.circular.rotate``); its score reads the
letter from the final answer (the reasoning trace split off, as siuo_mcq does) and logs the
rotation's cell, ``RotationAnswer.to_dict()``, under ``VALUES_KEY``. The metric hands each of
the core's reducers (``CIRCULAR_REDUCERS``) the cells lmms-eval's aggregation of that name gets
(``rotation_values``: every cell, or for a per-category metric that category's cells), so the
numbers equal the lmms-eval task's for the same responses.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from inspect_ai.scorer import Metric, SampleScore, Score, Scorer, Target, metric, scorer
from inspect_ai.solver import TaskState

from siuo_task.adapters.inspect_ai.scoring import VALUES_KEY, numeric_metrics
from siuo_task.circular import CIRCULAR_REDUCERS, RotationAnswer, answer_rotation, rotate, rotation_values
from siuo_task.data import load_siuo
from siuo_task.reasoning import ReasoningSettings, split_reasoning


def circular_sample_id(question_id: int, rotation: int) -> str:
    """The sample id of one rotation of one item: "<question_id>-<rotation>"."""
    return f"{question_id}-{rotation}"


def circular_metrics(cells: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Every siuo_mcq_circular metric from the per-rotation cells, as numbers (Inspect's rule:
    an undefined value, e.g. a category with no complete item, is left out).

    Args:
        cells: one ``RotationAnswer.to_dict()`` per answered (item, rotation), in any order.
    """
    per_metric: dict[str, list[dict[str, Any]]] = {}
    for cell in cells:
        for name, value in rotation_values(RotationAnswer.from_dict(cell)).items():
            if name in CIRCULAR_REDUCERS:
                per_metric.setdefault(name, []).append(value)
    reduced = {name: reducer(per_metric[name]) for name, reducer in CIRCULAR_REDUCERS.items() if name in per_metric}
    return numeric_metrics(reduced)


@metric(name="siuo_circular")
def siuo_circular_metrics() -> Metric:
    """Circular accuracy (with stderr and 95% CI), per category, unparsed rate, incomplete
    items, letter use and constant-letter baselines, reduced by the core from the cells."""

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
    items = {item.question_id: item for item in load_siuo(data_dir).mcq}
    tags = ReasoningSettings.from_env().tags  # read before any generation: a bad value stops the build

    async def score(state: TaskState, target: Target) -> Score:
        question = rotate(items[int(state.metadata["question_id"])], int(state.metadata["rotation"]))
        answer = answer_rotation(question, split_reasoning(state.output.completion, tags).answer)
        return Score(
            value=float(answer.correct),
            answer=answer.parsed,
            explanation=None if answer.parsed else "no letter could be read from the answer",
            metadata={VALUES_KEY: answer.to_dict()},
        )

    return score
