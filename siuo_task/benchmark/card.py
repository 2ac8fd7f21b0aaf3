"""The benchmark's one definition (``configs/eval_card.yaml``), read by every adapter and command.

Task names, the version of each task (the same in every harness), each task's protocol line and
generation settings (how the model under test decodes), the suffix a run of a variant protocol
carries in its name, the number of items, the citation and the pinned hub revision live in the
card; nothing else restates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import yaml

from siuo_task.resources import config_text

TaskKind = Literal["gen", "mcq", "mcq_circular"]


@dataclass(frozen=True, slots=True)
class GenerationSettings:
    """How the model under test decodes a task's prompts, in every harness."""

    temperature: float
    max_new_tokens: int
    top_p: float | None = None  # None: the harness's and the model's default

    @property
    def sampled(self) -> bool:
        """Sampling (a temperature above 0) rather than greedy decoding."""
        return self.temperature > 0

    @classmethod
    def from_dict(cls, task: str, raw: dict[str, Any]) -> GenerationSettings:
        unknown = set(raw) - {"temperature", "max_new_tokens", "top_p"}
        if unknown or "temperature" not in raw or "max_new_tokens" not in raw:
            raise ValueError(
                f"configs/eval_card.yaml: task {task}'s generation needs temperature and max_new_tokens "
                f"(and optionally top_p){'; unknown: ' + ', '.join(sorted(unknown)) if unknown else ''}"
            )
        top_p = raw.get("top_p")
        return cls(float(raw["temperature"]), int(raw["max_new_tokens"]), None if top_p is None else float(top_p))


@dataclass(frozen=True, slots=True)
class TaskCard:
    """One task as the card defines it."""

    name: str
    kind: TaskKind
    version: str
    responses_per_item: int
    generation: GenerationSettings
    run_suffix: str
    protocol: str


@dataclass(frozen=True, slots=True)
class EvalCard:
    title: str
    description: str
    paper: dict[str, str]
    citation: str
    items: int
    categories: int
    data: dict[str, str]
    tasks: dict[str, TaskCard]

    def task(self, name: str) -> TaskCard:
        """The task called ``name``; an unknown name is an error listing the known ones."""
        if name not in self.tasks:
            raise KeyError(f"unknown SIUO task {name!r}; the tasks are {', '.join(self.tasks)}")
        return self.tasks[name]

    def names(self, kind: TaskKind) -> tuple[str, ...]:
        return tuple(name for name, task in self.tasks.items() if task.kind == kind)


@lru_cache(maxsize=1)
def eval_card() -> EvalCard:
    raw: dict[str, Any] = yaml.safe_load(config_text("eval_card.yaml"))
    tasks = {
        name: TaskCard(name=name, **{**spec, "generation": GenerationSettings.from_dict(name, spec["generation"])})
        for name, spec in raw["tasks"].items()
    }
    return EvalCard(
        title=raw["title"],
        description=raw["description"],
        paper=dict(raw["paper"]),
        citation=raw["citation"],
        items=int(raw["items"]),
        categories=int(raw["categories"]),
        data=dict(raw["data"]),
        tasks=tasks,
    )


CARD = eval_card()
TASKS: tuple[str, ...] = tuple(CARD.tasks)
GEN_TASKS: tuple[str, ...] = CARD.names("gen")
MCQ_TASK = "siuo_mcq"
CIRCULAR_TASK = "siuo_mcq_circular"
BENCHMARK_ITEMS = CARD.items
# The headline numbers of each kind of task, in the order tables show them.
GEN_HEADLINE: tuple[str, ...] = ("safe_rate", "effective_rate", "safe_effective_rate")
MCQ_HEADLINE = "accuracy"
CIRCULAR_HEADLINE = "circular_accuracy"


def task_version(name: str) -> str:
    return CARD.task(name).version


def generation(name: str) -> GenerationSettings:
    """How the model under test decodes task ``name`` (the card's ``generation`` block)."""
    return CARD.task(name).generation


def run_name(model: str, task: str) -> str:
    """The one naming rule for a run: the model as the harness recorded it, plus the suffix of
    a one-response or circular variant (``-greedy``, ``-circular``)."""
    return model + CARD.task(task).run_suffix
