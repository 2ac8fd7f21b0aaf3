"""Reading Inspect logs of the SIUO tasks, for ``siuo-eval judge`` and ``siuo-eval report``.

Logs are read with Inspect's own reader (``inspect_ai.log.read_eval_log``), ``.eval`` or
``.json``; Inspect writes one log per task. ``siuo-eval judge`` takes the responses of a
siuo_gen / siuo_gen_greedy log (every epoch of every sample, scored or ``--no-score``);
``siuo-eval report`` takes the per-item values the tasks logged and reduces them with the same
reducers as every other entry point. Inspect is imported only when a log is actually read.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from siuo_task.adapters.inspect_ai.keys import VALUES_KEY
from siuo_task.adapters.inspect_ai.responses import response_text
from siuo_task.harness.api import (
    CIRCULAR_REDUCERS,
    CIRCULAR_TASK,
    GEN_REDUCERS,
    GEN_TASKS,
    MCQ_REDUCERS,
    MCQ_TASK,
    RECORD_KEY,
    TASKS,
    DataError,
    SiuoData,
    item_records,
    reduce_values,
)
from siuo_task.runs import Note, ResponseSet, ResponsesFile, Run, TaskRun, short_model

if TYPE_CHECKING:
    from inspect_ai.log import EvalLog

HARNESS = "Inspect"


def is_inspect_log(path: Path) -> bool:
    """An Inspect log file: ``.eval``, or a ``.json`` object whose first key is Inspect's."""
    if not path.is_file():
        return False
    if path.suffix == ".eval":
        return True
    if path.suffix != ".json":
        return False
    with open(path, encoding="utf-8", errors="replace") as handle:
        head = handle.read(256).lstrip()
    return head.startswith("{") and '"version"' in head and '"status"' in head


def read_log(path: Path, header_only: bool = False) -> EvalLog:
    """One log, read with Inspect's reader; errors name the file and what to do."""
    try:
        from inspect_ai.log import read_eval_log
    except ImportError as exc:
        raise DataError(f"'{path}' is an Inspect log; reading it needs: pip install 'siuo-task[inspect]'") from exc
    try:
        return read_eval_log(str(path), header_only=header_only)
    except Exception as exc:  # Inspect raises several types for unreadable logs
        raise DataError(f"'{path}' could not be read as an Inspect log ({type(exc).__name__}: {exc})") from exc


def task_name(log: EvalLog) -> str:
    return log.eval.task.rsplit("/", 1)[-1]


def read_inspect_responses(path: Path) -> list[ResponseSet]:
    """Every epoch's response per item of a siuo_gen / siuo_gen_greedy log, in epoch order."""
    log = read_log(path)
    if task_name(log) not in GEN_TASKS:
        raise DataError(f"'{path}' is an Inspect log of task '{log.eval.task}'; pass a siuo_gen or siuo_gen_greedy log")
    if not log.samples:
        raise DataError(f"'{path}' holds no samples (status: {log.status}); rerun the evaluation")
    by_item: dict[int, list[tuple[int, str]]] = {}
    for sample in log.samples:
        if sample.error is not None:
            raise DataError(
                f"'{path}': sample {sample.id} epoch {sample.epoch} failed to generate ({sample.error.message}); "
                "retry the log with `inspect eval-retry` first"
            )
        # The visible reasoning goes back in front of the answer, as the in-run scorer sees it.
        by_item.setdefault(int(sample.id), []).append((sample.epoch, response_text(sample.output)))
    return [ResponseSet(qid, tuple(text for _, text in sorted(rows))) for qid, rows in by_item.items()]


def _values(log: EvalLog, path: Path) -> list[dict[str, Any]]:
    """The per-item values the SIUO scorer logged (after the epoch vote where there is one)."""
    for reduction in log.reductions or []:
        values = [s.metadata[VALUES_KEY] for s in reduction.samples if s.metadata and VALUES_KEY in s.metadata]
        if values:
            return values
    values = []
    for sample in log.samples or []:
        for score in (sample.scores or {}).values():
            if score.metadata and VALUES_KEY in score.metadata:
                values.append(score.metadata[VALUES_KEY])
    return values


def _task_run(log: EvalLog, values: list[dict[str, Any]], path: Path) -> TaskRun:
    task = task_name(log)
    if task == CIRCULAR_TASK:
        cells = [value.get(RECORD_KEY, value) for value in values]
        return TaskRun(task, reduce_values(values, CIRCULAR_REDUCERS), item_records(cells), samples_file=path)
    reducers = MCQ_REDUCERS if task == MCQ_TASK else GEN_REDUCERS
    records = {value[RECORD_KEY]["question_id"]: value[RECORD_KEY] for value in values}
    return TaskRun(task, reduce_values(values, reducers), records, samples_file=path)


class InspectReader:
    harness = HARNESS
    order = 20

    def find_responses(self, path: Path) -> ResponsesFile | Note | None:
        if not is_inspect_log(path):
            return None
        try:
            header = read_log(path, header_only=True)
        except DataError as exc:
            return Note(path, str(exc), failure=True)
        task = task_name(header)
        if task not in GEN_TASKS:
            reason = f"skipped: an Inspect log of task '{task}'; pass a siuo_gen or siuo_gen_greedy log (only "
            return Note(path, reason + "open-ended answers are judged)", quiet=True)
        model, kind = short_model(header.eval.model), f"Inspect {task} log"
        found = ResponsesFile(HARNESS, model, task, path, kind, "Inspect log model", self, stamp=header.eval.created)
        found.settings = header.eval.model
        return found

    def read_responses(self, found: ResponsesFile, data: SiuoData) -> list[ResponseSet]:
        return read_inspect_responses(found.path)

    def find_results(self, path: Path) -> list[Run] | Note | None:
        if not is_inspect_log(path):
            return None
        log = read_log(path)
        task = task_name(log)
        if task not in TASKS:
            return Note(path, f"skipped: an Inspect log of another task ({log.eval.task})")
        if log.status != "success":
            return Note(path, f"skipped: an unfinished Inspect log ({log.status}); retry it with `inspect eval-retry`")
        values = _values(log, path)
        if not values and task not in GEN_TASKS:
            return Note(path, f"skipped: an Inspect log of {task} with no SIUO scores (run with --no-score?)")
        # A --no-score log of an open-ended task: its responses, for `siuo-eval judge`.
        part = _task_run(log, values, path) if values else TaskRun(task, {}, samples_file=path)
        slot = {"gen": part if task in GEN_TASKS else None, "mcq": part if task == MCQ_TASK else None}
        circular = part if task == CIRCULAR_TASK else None
        model = short_model(log.eval.model)
        run = Run(path, slot["gen"], slot["mcq"], HARNESS, model, circular=circular, model_detail=log.eval.model)
        run.stamp, run.settings = log.eval.created, log.eval.model
        return [run]


READER = InspectReader()
