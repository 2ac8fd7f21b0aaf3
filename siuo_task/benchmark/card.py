"""The benchmark's one definition (``configs/eval_card.yaml``), read by every adapter and command.

Task names, the version of each task (the same in every harness), each task's protocol line,
the suffix a run of a variant protocol carries in its name, the number of items, the citation
and the pinned hub revision live in the card; nothing else restates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import yaml

from siuo_task.resources import config_text

TaskKind = Literal["gen", "mcq", "mcq_circular"]


@dataclass(frozen=True, slots=True)
class TaskCard:
    """One task as the card defines it."""

    name: str
    kind: TaskKind
    version: str
    responses_per_item: int
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
    tasks = {name: TaskCard(name=name, **{k: v for k, v in spec.items()}) for name, spec in raw["tasks"].items()}
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


def run_name(model: str, task: str) -> str:
    """The one naming rule for a run: the model as the harness recorded it, plus the suffix of
    a one-response or circular variant (``-greedy``, ``-circular``)."""
    return model + CARD.task(task).run_suffix
