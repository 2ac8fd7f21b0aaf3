"""Reading Inspect logs of the SIUO tasks, for ``siuo-eval judge`` and ``siuo-eval report``.

Logs are read with Inspect's own reader (``inspect_ai.log.read_eval_log``), ``.eval`` or
``.json``. ``siuo-eval judge`` takes the responses of a siuo_gen / siuo_gen_greedy log (every
epoch of every sample); ``siuo-eval report`` takes the per-item values the tasks logged and
reduces them with the same reducers as every other entry point. Nothing here imports Inspect
until a log is actually read.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from siuo_task.errors import DataError

if TYPE_CHECKING:
    from inspect_ai.log import EvalLog

    from siuo_task.rejudge import ResponseSet
    from siuo_task.runs import Run

GEN_TASKS = ("siuo_gen", "siuo_gen_greedy")
MCQ_TASK = "siuo_mcq"
VALUES_KEY = "siuo_values"  # as in siuo_task.adapters.inspect_ai.scoring (which imports Inspect)


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


def inspect_logs_in(folder: Path) -> list[Path]:
    """The Inspect log files directly in ``folder`` (Inspect's log dir is flat), oldest first."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if is_inspect_log(path))


def is_inspect_source(path: Path) -> bool:
    """A log file, or a folder holding Inspect logs and no lmms-eval / siuo-eval results."""
    if path.is_file():
        return is_inspect_log(path)
    return bool(inspect_logs_in(path)) and not any(path.rglob("*results.json"))


def read_log(path: Path) -> EvalLog:
    """One log, read with Inspect's reader; errors name the file and what to do."""
    try:
        from inspect_ai.log import read_eval_log
    except ImportError as exc:
        raise DataError(f"'{path}' is an Inspect log; reading it needs: pip install 'siuo-task[inspect]'") from exc
    try:
        return read_eval_log(str(path))
    except Exception as exc:  # Inspect raises several types for unreadable logs
        raise DataError(f"'{path}' could not be read as an Inspect log ({type(exc).__name__}: {exc})") from exc


def task_name(log: EvalLog) -> str:
    return log.eval.task.rsplit("/", 1)[-1]


def read_inspect_responses(path: Path) -> list[ResponseSet]:
    """Every epoch's response per item of a siuo_gen / siuo_gen_greedy log, in epoch order."""
    from siuo_task.rejudge import ResponseSet

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
        by_item.setdefault(int(sample.id), []).append((sample.epoch, sample.output.completion))
    return [ResponseSet(qid, tuple(text for _, text in sorted(rows))) for qid, rows in by_item.items()]


def _values(log: EvalLog, path: Path) -> list[dict[str, Any]]:
    """The per-item values the SIUO scorer logged (one per sample, after the epoch vote)."""
    for reduction in log.reductions or []:
        values = [s.metadata[VALUES_KEY] for s in reduction.samples if s.metadata and VALUES_KEY in s.metadata]
        if values:
            return values
    values = []
    for sample in log.samples or []:
        for score in (sample.scores or {}).values():
            if score.metadata and VALUES_KEY in score.metadata:
                values.append(score.metadata[VALUES_KEY])
    if not values:
        raise DataError(f"'{path}' holds no SIUO per-item values; was it run with the siuo_task tasks' scorers?")
    return values


def _task_run(log: EvalLog, path: Path) -> Any:
    from siuo_task.results import GEN_REDUCERS, MCQ_REDUCERS, RECORD_KEY, reduce_values
    from siuo_task.runs import TaskRun

    values = _values(log, path)
    reducers = MCQ_REDUCERS if task_name(log) == MCQ_TASK else GEN_REDUCERS
    records = {value[RECORD_KEY]["question_id"]: value[RECORD_KEY] for value in values}
    return TaskRun(task_name(log), reduce_values(values, reducers), records, samples_file=path)


def load_inspect_run(path: Path) -> Run:
    """A run from one Inspect log, or from a log folder (its one siuo_gen* log and one siuo_mcq
    log, of one model).

    Raises:
        DataError: no SIUO log there, logs of several models, or several logs of one kind.
    """
    from siuo_task.runs import Run

    files = [path] if path.is_file() else inspect_logs_in(path)
    logs = [(file, read_log(file)) for file in files]
    logs = [(file, log) for file, log in logs if task_name(log) in (*GEN_TASKS, MCQ_TASK) and log.status == "success"]
    if not logs:
        raise DataError(f"no finished Inspect log of siuo_gen, siuo_gen_greedy or siuo_mcq in '{path}'")
    models = sorted({log.eval.model for _, log in logs})
    if len(models) > 1:
        raise DataError(
            f"'{path}' holds Inspect logs of several models ({', '.join(models)}); "
            "pass each model's log files as NAME=FILE"
        )
    gen = [(file, log) for file, log in logs if task_name(log) in GEN_TASKS]
    mcq = [(file, log) for file, log in logs if task_name(log) == MCQ_TASK]
    for kind, found in (("open-ended", gen), ("siuo_mcq", mcq)):
        if len(found) > 1:  # never pick one silently
            listed = "; ".join(str(file) for file, _ in found)
            raise DataError(f"'{path}' holds {len(found)} {kind} Inspect logs: {listed}; pass each as NAME=FILE")
    return Run(
        name=models[0].rsplit("/", 1)[-1],
        source=path,
        gen=_task_run(gen[-1][1], gen[-1][0]) if gen else None,
        mcq=_task_run(mcq[-1][1], mcq[-1][0]) if mcq else None,
        harness="Inspect",
        model=models[0],
    )
