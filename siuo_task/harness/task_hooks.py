"""What the task hooks of the YAML harnesses (lmms-eval, lm-eval) do, harness-agnostic.

Both harnesses build a task from a YAML whose hooks (documents, prompt, per-document results,
aggregations, a response filter) are plain functions they call with their own conventions.
Everything the two share lives here: the documents, the one response flattener, the
per-document rows, judging a rank's responses ahead in the filter, the task summaries, and the
patch that keeps MCQ scoring in a generation-only run. Each adapter keeps only its glue: prompt
placeholders, how it detects a generation-only run, its option names, and registering and
patching its harness (adapters/lmms_eval, adapters/lm_eval). Nothing here imports a harness.

State lives with the run it belongs to, never in the process:

- A task's summary (CIs, per-category rates, judge, usage) is computed by its ``items_scored``
  aggregation and must reach the harness's results file, which the harness saves later, with
  no channel between the two. The aggregation returns an ``ItemCount``: the count the harness
  prints, carrying the summary inside the run's own results; the patched save takes it from
  there (``take_summaries``). A run that is never saved, or that has no aggregation (a
  generation-only run), cannot leave a summary behind for another run to write.
- The judge engine and the outcomes judged ahead belong to a ``HarnessRun``. Building one of
  our tasks' documents is the first thing every harness run does with our tasks (before any
  generation, filter or scoring), so it starts a new one: an engine stopped by a refusing judge
  in one run, or outcomes an aborted run never took, do not reach the next run in the process.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from siuo_task.benchmark.circular import answer_rotation, rotate, rotation_values, rotations
from siuo_task.benchmark.data import GenItem, McqItem, SiuoData, item_document
from siuo_task.benchmark.panel_vote import vote
from siuo_task.benchmark.prompts import mcq_prompt
from siuo_task.benchmark.reasoning import split_reasoning
from siuo_task.benchmark.records import record_counts
from siuo_task.benchmark.results import (
    GEN_COUNT_ROWS,
    GEN_RATE_ROWS,
    MCQ_COUNT_ROWS,
    MCQ_RATE_ROWS,
    RECORD_KEY,
    SUMMARY_ROW,
    Reducer,
    gen_item_values,
    harness_rows,
    mcq_item_values,
)
from siuo_task.benchmark.scoring import assemble_gen_record, score_gen_item, score_mcq_item
from siuo_task.harness.command_line import cli_option, running_cli
from siuo_task.harness.judged_ahead import JudgedAhead
from siuo_task.harness.preflight import check_judge_before_generation
from siuo_task.harness.run_end import finish_task
from siuo_task.judge.engines import AnyEngine, AnyJudge, new_engine
from siuo_task.runs.files import flat_responses
from siuo_task.runs.outputs import check_output_folder
from siuo_task.settings import Settings

# Where a YAML harness's results file holds our tasks' summaries: {"siuo": {<task>: {...}}}.
RESULTS_KEY = "siuo"
_PATCHED = "_siuo_task_patched"


# -- the run ----------------------------------------------------------------------------------


class HarnessRun:
    """What one harness run of our tasks shares between its hooks: its settings (read from the
    environment once, when it began), one engine per judge (its coalescing spans the run's
    filters and hooks) and the outcomes its filters judged ahead."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings
        self.judged = JudgedAhead()
        self._engines: dict[AnyJudge, AnyEngine] = {}
        self._lock = threading.Lock()

    @property
    def settings(self) -> Settings:
        """The settings read when the run began (its documents were built). A hook called with
        no run begun in this process (called directly, not by a harness) reads the environment
        as it is at that call."""
        return self._settings if self._settings is not None else Settings.from_env()

    def judge(self) -> AnyJudge:
        """The run's judge, or panel (SIUO_JUDGE_PANEL)."""
        return self.settings.judge()

    def data(self) -> SiuoData:
        """The validated items (the loader keeps them per folder for the process)."""
        return self.settings.data()

    def close(self) -> None:
        """Close the engines this run opened (their workers, connections and cache)."""
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.close()

    def engine(self, config: AnyJudge) -> AnyEngine:
        with self._lock:
            if config not in self._engines:
                # A panel: one engine per judge. A run keeps its responses through an outage: what
                # is left to judge becomes judge errors, and its banner names the finishing command.
                self._engines[config] = new_engine(config, vote, errors_after_outage=True)
            return self._engines[config]


class _Runs:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current = HarnessRun()

    def begin(self) -> HarnessRun:
        begun = HarnessRun(Settings.from_env())
        with self._lock:
            ended, self._current = self._current, begun
        # The run this one replaces is over (a harness builds every task's documents before it
        # generates): what it opened is closed by it.
        ended.close()
        return begun

    def current(self) -> HarnessRun:
        with self._lock:
            return self._current


_RUNS = _Runs()


def begin_run() -> HarnessRun:
    """Start a new run (when its documents are built, before any generation); the previous
    run's state is dropped. An ``--output_path`` the harness could not write ends the run here,
    before anything is paid for (lmms-eval would generate and judge, fail to save, and exit 0)."""
    output = cli_option("--output_path", "-o") if running_cli("lmms_eval", "lm_eval") else None
    if output:
        check_output_folder(Path(output), "--output_path")
    return _RUNS.begin()


def current_run() -> HarnessRun:
    """The run whose hooks are being called."""
    return _RUNS.current()


# -- documents --------------------------------------------------------------------------------


def gen_documents(judged: bool) -> list[dict[str, Any]]:
    """The validated open-ended items as documents; for a judged run the judge is checked
    first, so a missing key fails before any generation (a generation-only run needs none: its
    samples are judged later by ``siuo-eval judge``). Starts a new run."""
    run = begin_run()
    run.settings.reasoning  # noqa: B018  (parsed now: a bad value stops the run before any generation)
    if judged:
        check_judge_before_generation(run.judge(), run.settings)
    return [item_document(item) for item in run.data().gen]


def mcq_documents() -> list[dict[str, Any]]:
    """The validated multiple-choice items as documents. Starts a new run."""
    return [item_document(item) for item in begin_run().data().mcq]


def mcq_circular_documents() -> list[dict[str, Any]]:
    """One document per (item, rotation), item-major, so ``--limit 4k`` keeps k whole items.

    Each document carries its rotated options and the gold letter they imply, so the MCQ
    prompt and target hooks serve it unchanged. Starts a new run.
    """
    docs = []
    for item in begin_run().data().mcq:
        for question in rotations(item):
            doc = item_document(item)
            doc.update(options=dict(question.options), correct_option=question.gold, rotation=question.rotation)
            docs.append(doc)
    return docs


def doc_to_image(doc: dict[str, Any]) -> list[Image.Image]:
    with Image.open(doc["image_path"]) as image:
        return [image.convert("RGB")]


def gen_question(doc: dict[str, Any]) -> str:
    """The question alone, as in the paper: no system prompt, nothing appended."""
    return str(doc["question"])


def mcq_question(doc: dict[str, Any]) -> str:
    return mcq_prompt(doc["question"], doc["options"])


def doc_to_target_gen(doc: dict[str, Any]) -> str:
    return str(doc["reference_answer"])


def doc_to_target_mcq(doc: dict[str, Any]) -> str:
    return str(doc["correct_option"])


def _gen_item(doc: dict[str, Any]) -> GenItem:
    """The validated item behind a document (the loader is cached per process)."""
    return {item.question_id: item for item in current_run().data().gen}[doc["question_id"]]


def _mcq_item(doc: dict[str, Any]) -> McqItem:
    return {item.question_id: item for item in current_run().data().mcq}[doc["question_id"]]


# -- responses --------------------------------------------------------------------------------


def response_texts(raw: Any, strip: bool = False) -> tuple[str, ...]:
    """A document's responses as its scoring hook receives them (flattened as the readers
    flatten them from the samples files): None becomes empty, and ``strip`` mirrors a harness
    that strips each response before the hook (lmms-eval)."""
    texts = ("" if response is None else str(response) for response in flat_responses(raw))
    return tuple(text.strip() if strip else text for text in texts)


# -- per-document results ---------------------------------------------------------------------


def gen_rows(task: str, doc: dict[str, Any], responses: tuple[str, ...]) -> dict[str, Any]:
    """One item's printed rows, full values and record, from the outcomes the filter judged
    ahead, or judged here when there are none (e.g. a task YAML without our filter)."""
    item, run = _gen_item(doc), current_run()
    config, reasoning = run.judge(), run.settings.reasoning
    judged = run.judged.take(config, reasoning, item.question_id, responses)
    if judged is not None:
        record = assemble_gen_record(item, responses, judged.outcomes, reasoning)
        values = gen_item_values(record, config, judged.started, judged.finished)
    else:
        started = time.time()
        record = score_gen_item(item, responses, run.engine(config), reasoning)
        values = gen_item_values(record, config, started, time.time())
    return _rows(harness_rows(values, GEN_RATE_ROWS, GEN_COUNT_ROWS), task)


def mcq_rows(task: str, doc: dict[str, Any], responses: tuple[str, ...]) -> dict[str, Any]:
    reasoning = current_run().settings.reasoning
    values = mcq_item_values(score_mcq_item(_mcq_item(doc), responses[0], reasoning))
    return _rows(harness_rows(values, MCQ_RATE_ROWS, MCQ_COUNT_ROWS), task)


def mcq_circular_values(doc: dict[str, Any], responses: tuple[str, ...]) -> dict[str, Any]:
    question = rotate(_mcq_item(doc), doc["rotation"])
    # The letter is read from the final answer, as in siuo_mcq (the hook gets the raw text).
    answer = split_reasoning(responses[0], current_run().settings.reasoning.tags).answer
    return rotation_values(answer_rotation(question, answer))


def _rows(rows: dict[str, Any], task: str) -> dict[str, Any]:
    # The summary is kept per task (siuo_gen and siuo_gen_greedy may run together).
    rows[SUMMARY_ROW]["task"] = task
    rows[SUMMARY_ROW]["judge_outcomes"] = record_counts(rows[RECORD_KEY]).banner()
    return rows


def judge_ahead(items: Sequence[GenItem], results: Iterable[Any], strip: bool = False) -> None:
    """A filter's work: judge every document's responses (each instance's filtered entry) in
    one batch at the engine's bound, keeping the outcomes for the run's scoring hooks.

    Args:
        items: each instance's item, in order.
        results: each instance's filtered responses (a string, or a list with one per repeat).
        strip: the harness strips each response before the scoring hook (see response_texts).
    """
    responses = [response_texts([result], strip) for result in results]
    run = current_run()
    run.judged.judge(items, responses, run.engine(run.judge()), run.settings.reasoning, run.settings.first_process)


# -- summaries --------------------------------------------------------------------------------


class ItemCount(int):
    """An aggregation's item count (the number the harness prints) that carries, inside the
    run's own results, what the harness has no row for: the task's summary, if any.

    Every kind of ``items_scored`` / record row of our tasks returns one, so the patched save
    also recognises our tasks by it (``take_summaries``).
    """

    summary: dict[str, Any] | None

    def __new__(cls, count: int, summary: dict[str, Any] | None = None) -> ItemCount:
        made = super().__new__(cls, count)
        made.summary = summary
        return made


def items_scored(cells: list[dict[str, Any]], reducers: dict[str, Reducer], output: str | None) -> ItemCount:
    """Aggregation of a task's ``items_scored`` row: the item count, carrying the task's summary
    (siuo_task.benchmark.summary, as for ``siuo-eval judge``); a judge-error banner names ``output``."""
    task = next((cell.get("task") for cell in cells if cell.get("task")), None) or "unknown"
    return ItemCount(len(cells), finish_task(task, cells, reducers, output).to_dict())


def record_count(records: list[Any]) -> ItemCount:
    """Aggregation of the per-item record, for a harness that aggregates every key
    process_results returns (the record is there only to be logged with the sample)."""
    return ItemCount(len(records))


def take_summaries(results: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Our tasks in a run's results (by their ``ItemCount`` rows) and the summaries those rows
    carry; the rows become plain numbers, so nothing of ours is left in the results.

    Returns:
        (summary per task, the names of our tasks).
    """
    summaries: dict[str, dict[str, Any]] = {}
    ours: set[str] = set()
    for task, entry in results.get("results", {}).items():
        if not isinstance(entry, dict):
            continue
        for key, value in entry.items():
            if isinstance(value, ItemCount):
                ours.add(task)
                entry[key] = int(value)
                if value.summary is not None:
                    summaries[task] = value.summary
    return summaries, ours


def add_summaries(results: dict[str, Any]) -> set[str]:
    """Put the summaries of a run's tasks under results["siuo"]; the names of our tasks."""
    summaries, ours = take_summaries(results)
    if summaries:
        results[RESULTS_KEY] = {**results.get(RESULTS_KEY, {}), **summaries}
    return ours


# -- patches of a harness's classes -----------------------------------------------------------


def patch_save(tracker: type, before_save: Callable[[dict[str, Any]], None]) -> None:
    """Have a harness's ``EvaluationTracker.save_results_aggregated(results, ...)`` call
    ``before_save(results)`` first, in place (so a table printed afterwards matches the file);
    once per class."""
    save = tracker.save_results_aggregated  # type: ignore[attr-defined]
    if getattr(save, _PATCHED, False):
        return

    @functools.wraps(save)
    def save_results_aggregated(self: Any, results: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        before_save(results)
        return save(self, results, *args, **kwargs)

    setattr(save_results_aggregated, _PATCHED, True)
    tracker.save_results_aggregated = save_results_aggregated  # type: ignore[attr-defined]


def keep_mcq_scoring_in_predict_only(task_class: type, hooks_module: str) -> None:
    """A generation-only run (``--predict_only``) replaces every task's metrics with "bypass".
    Our multiple-choice tasks need no judge, so they keep their scoring and a generation-only
    run still reports MCQ accuracy. Patches the harness's ``ConfigurableTask.override_metric``
    once; ``hooks_module`` is where the adapter's process_results_mcq* hooks are defined."""
    override = task_class.override_metric  # type: ignore[attr-defined]
    if getattr(override, _PATCHED, False):
        return

    @functools.wraps(override)
    def override_metric(self: Any, metric_name: str) -> None:
        if metric_name == "bypass" and _is_our_mcq(self, hooks_module):
            return
        override(self, metric_name)

    setattr(override_metric, _PATCHED, True)
    task_class.override_metric = override_metric  # type: ignore[attr-defined]


def _is_our_mcq(task: Any, hooks_module: str) -> bool:
    hook = getattr(getattr(task, "config", None), "process_results", None)
    return getattr(hook, "__module__", "") == hooks_module and getattr(hook, "__name__", "").startswith(
        "process_results_mcq"
    )
