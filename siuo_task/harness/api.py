"""The core's one way in for harness adapters.

An adapter (``siuo_task/adapters/<harness>/``) translates between its harness and SIUO; it never
decides how SIUO is scored. Everything it needs from the core is here, grouped by what a task
does over its life: its definition and settings, its documents and prompts, judging a batch of
responses, scoring multiple choice, its per-item values and summary, and how it ends. Besides
this module an adapter imports only ``siuo_task.runs`` (the reader of its own output files),
``siuo_task.harness.task_hooks`` (the hooks the two YAML harnesses share) and, for Inspect's
grader role, the judge client's ``Transport`` interface (``siuo_task.judge.transport``).

Adding a harness: docs/development.md, "Adding a harness".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from siuo_task.benchmark import circular
from siuo_task.benchmark.card import (
    CARD,
    CIRCULAR_TASK,
    GEN_HEADLINE,
    GEN_TASKS,
    MCQ_TASK,
    TASKS,
    generation,
    task_version,
)
from siuo_task.benchmark.circular import (
    CIRCULAR_ACCURACY,
    CIRCULAR_REDUCERS,
    answer_rotation,
    group_items,
    item_records,
    rotate,
    rotation_values,
    rotations,
    summarise,
)
from siuo_task.benchmark.data import GenItem, McqItem, SiuoData, item_document
from siuo_task.benchmark.panel_vote import vote
from siuo_task.benchmark.prompts import PROMPT_VERSION, mcq_prompt, prompt_templates_sha256
from siuo_task.benchmark.reasoning import ReasoningSettings, split_reasoning
from siuo_task.benchmark.records import GenRecord, McqRecord, ResponseRecord
from siuo_task.benchmark.results import (
    GEN_REDUCERS,
    MCQ_REDUCERS,
    RECORD_KEY,
    gen_item_values,
    mcq_item_values,
    reduce_values,
    total,
)
from siuo_task.benchmark.scoring import GEN_METRICS, assemble_gen_record, grade, score_mcq_item
from siuo_task.benchmark.summary import TaskSummary, item_counts, task_summary
from siuo_task.errors import DataError, JudgeConfigError, SiuoError
from siuo_task.harness.command_line import cli_option, invoked_command, running_cli
from siuo_task.harness.judging import judge_responses, match_items, write_outputs
from siuo_task.harness.preflight import check_judge_before_generation
from siuo_task.harness.run_end import (
    end_on_interrupt,
    exit_nonzero_if_judge_failed,
    exit_now,
    fail_plainly,
    finish_task,
    print_last,
    report_judge_errors,
    task_finished,
    task_started,
)
from siuo_task.judge import engines
from siuo_task.judge.config import OPENAI_DEFAULT_BASE_URL, PLACEHOLDER_KEY, JudgeConfig
from siuo_task.judge.engine import INTERRUPT_GRACE_S, JudgeEngine, shared_engine
from siuo_task.judge.engines import AnyEngine, AnyJudge, judges_of
from siuo_task.judge.interrupts import STOP_SIGNALS, JudgeInterrupted
from siuo_task.judge.panel import PANEL_VARIABLE, PanelConfig
from siuo_task.judge.request import JudgeRequest
from siuo_task.judge.transport import KEY_LIKE, Transport, encoded_image
from siuo_task.runs.outputs import check_output_folder
from siuo_task.settings import Settings

__all__ = [
    "CARD",
    "CIRCULAR_ACCURACY",
    "CIRCULAR_REDUCERS",
    "CIRCULAR_TASK",
    "GEN_HEADLINE",
    "GEN_METRICS",
    "GEN_REDUCERS",
    "GEN_TASKS",
    "INTERRUPT_GRACE_S",
    "MCQ_REDUCERS",
    "MCQ_TASK",
    "OPENAI_DEFAULT_BASE_URL",
    "PANEL_VARIABLE",
    "PLACEHOLDER_KEY",
    "PROMPT_VERSION",
    "RECORD_KEY",
    "STOP_SIGNALS",
    "TASKS",
    "AnyEngine",
    "AnyJudge",
    "DataError",
    "GenItem",
    "GenRecord",
    "JudgeConfig",
    "JudgeConfigError",
    "JudgeEngine",
    "JudgeInterrupted",
    "JudgeRequest",
    "McqItem",
    "McqRecord",
    "PanelConfig",
    "ReasoningSettings",
    "ResponseRecord",
    "Settings",
    "SiuoData",
    "SiuoError",
    "TaskSummary",
    "Transport",
    "answer_rotation",
    "assemble_gen_record",
    "check_judge_before_generation",
    "check_output_folder",
    "circular",
    "cli_option",
    "end_on_interrupt",
    "exit_nonzero_if_judge_failed",
    "exit_now",
    "fail_plainly",
    "finish_task",
    "gen_item_values",
    "generation",
    "grade",
    "group_items",
    "image_data_url",
    "invoked_command",
    "item_counts",
    "item_document",
    "item_records",
    "judge_responses",
    "judges_of",
    "match_items",
    "mcq_item_values",
    "mcq_prompt",
    "new_engine",
    "print_last",
    "prompt_templates_sha256",
    "redact_keys",
    "reduce_values",
    "report_judge_errors",
    "rotate",
    "rotation_values",
    "rotations",
    "running_cli",
    "score_mcq_item",
    "shared_engine",
    "split_reasoning",
    "summarise",
    "task_finished",
    "task_started",
    "task_summary",
    "task_version",
    "total",
    "write_outputs",
]


# -- judging: what an adapter's own judge path needs beyond ``grade`` ----------------------------


def new_engine(
    config: AnyJudge, transports: Sequence[Transport | None] | None = None, errors_after_outage: bool = False
) -> AnyEngine:
    """An engine for the judge, or for each judge of a panel voting as SIUO's jury votes
    (``siuo_task.benchmark.panel_vote``); its opener closes it (``engine.close()``)."""
    return engines.new_engine(config, vote, transports, errors_after_outage)


def redact_keys(text: str) -> str:
    """``text`` with anything shaped like an API key replaced, for a message from a harness's
    model API that may echo its key."""
    return KEY_LIKE.sub("[redacted]", text)


def image_data_url(path: Path) -> str:
    """An item's image as a ``data:`` URL, encoded as the judge client sends it."""
    return encoded_image(path).data_url
