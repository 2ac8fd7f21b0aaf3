"""How a harness run of our tasks ends: plain errors, a loud judge-error banner, and a non-zero
exit status after judge errors, the same in every harness.

lmms-eval and lm-eval exit 0 after most errors, so a batch job would count a run whose judge
failed as a success. ``exit_nonzero_if_judge_failed`` registers, early, an exit handler that
runs after every other one (handlers run last-registered-first) and, when the run had judge
errors, flushes the streams and the logs and ends the process with status 1: by then the
harness has written its results and samples, which keep every response. The banner's last line
names the one command that finishes the scoring from those files. Only a harness's own CLI
process is ended so; a test or notebook that calls a harness in-process is left alone.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import ParamSpec, TypeVar

from siuo_task.benchmark.records import JudgeCounts
from siuo_task.benchmark.results import Reducer
from siuo_task.benchmark.summary import TaskSummary, Values, item_counts, not_sampled_warning, task_summary
from siuo_task.errors import JudgeDeclineError, SiuoError
from siuo_task.harness.banners import judge_error_warning
from siuo_task.harness.command_line import invoked_command, running_cli
from siuo_task.judge.interrupts import JudgeInterrupted

P = ParamSpec("P")
R = TypeVar("R")
JUDGE_ERROR_STATUS = 1
_LOCK = threading.Lock()
_STATE = {"handler": False}
_BANNERS: dict[str, str] = {}
# Our tasks a harness CLI began and has not finished, by task: the harness's name. Some harnesses
# (lmms-eval, VLMEvalKit) log an exception raised while a task runs and then exit 0.
_UNFINISHED: dict[str, str] = {}
UNFINISHED_STATUS = 1


def fail_plainly(hook: Callable[P, R]) -> Callable[P, R]:
    """Our errors end the run with our message as the last line, at once.

    Harnesses retry or wrap a failing hook (lmms-eval retries process_docs and process_results
    5 times, then shows a RetryError at the end of a long traceback). A bad data folder or judge
    setting will not heal on retry, so it leaves as SystemExit, which is no Exception: not
    retried, and Python prints only its message (exit status 1).
    """

    @functools.wraps(hook)
    def plain(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return hook(*args, **kwargs)
        except SiuoError as exc:
            with _LOCK:  # this line is the run's last word, and its status is 1 already
                _UNFINISHED.clear()
            raise SystemExit(f"siuo-task: {error_text(exc)}") from exc
        except JudgeInterrupted as exc:
            end_interrupted(exc)
            raise

    return plain


def end_on_interrupt(hook: Callable[P, R]) -> Callable[P, R]:
    """Judging in ``hook`` stopped by SIGINT / SIGTERM ends a harness CLI with one line and the
    signal's status (``end_interrupted``); other errors are left to the harness."""

    @functools.wraps(hook)
    def plain(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return hook(*args, **kwargs)
        except JudgeInterrupted as exc:
            end_interrupted(exc)
            raise

    return plain


def end_interrupted(exc: JudgeInterrupted) -> None:
    """In a harness CLI, judging stopped on a signal: one line naming the command that resumes,
    then the signal's exit status, without a traceback (or the harness's own clean-up, which
    would wait for calls left in flight). In-process callers get the exception."""
    with _LOCK:
        in_cli = bool(_STATE["handler"])
    if not in_cli:
        return
    print_last(
        f"siuo-task: {exc}. No score was written. To resume, run the same command again (it takes the "
        f"verdicts kept from the judge cache): {invoked_command()}"
    )
    exit_now(exc.status)


def exit_now(status: int) -> None:
    """End the process at once with ``status``, after flushing the streams and the logs (threads
    still waiting on a judge call are not joined)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (ValueError, OSError):
            pass
    logging.shutdown()
    os._exit(status)


def error_text(exc: SiuoError) -> str:
    """Our error as a command shows it: the judge client knows no ``siuo-eval`` command, so the
    one that helps after its decline stop is named here."""
    if isinstance(exc, JudgeDeclineError):
        return (
            f"{exc} Before trusting another judge's numbers, compare its verdicts with this one's: "
            "siuo-eval agreement RUN_A RUN_B."
        )
    return str(exc)


def report_judge_errors(task: str, per_item: Sequence[JudgeCounts], output: str | None) -> None:
    """After a task's aggregation: keep its judge errors for the exit status and its banner for the
    run's last words (printed at exit, after the harness's table, in a harness CLI; at once
    otherwise). A task reported again (a harness recomputing its metrics) replaces its entry."""
    warning = judge_error_warning(task, per_item, output)
    with _LOCK:
        if warning is None:
            _BANNERS.pop(task, None)
            return
        _BANNERS[task] = warning
        printed_at_exit = bool(_STATE["handler"])
    if not printed_at_exit:
        print_last(warning)


def print_last(text: str) -> None:
    try:
        print(text, file=sys.stderr, flush=True)
    except ValueError:  # sys.stderr was replaced and closed (e.g. captured by a test runner)
        print(text, file=sys.__stderr__, flush=True)


def exit_nonzero_if_judge_failed(*modules: str) -> None:
    """Install (once, early) the exit handler that ends a harness CLI with status 1 after judge errors."""
    with _LOCK:
        if _STATE["handler"] or not running_cli(*modules):
            return
        _STATE["handler"] = True
    atexit.register(_exit_status)


def task_started(harness: str, tasks: Sequence[str]) -> None:
    """A harness began running our ``tasks``: until ``task_finished``, its CLI cannot end with 0."""
    with _LOCK:
        _UNFINISHED.update(dict.fromkeys(tasks, harness))


def task_finished(tasks: Sequence[str]) -> None:
    """Our ``tasks`` ran to the end (their results are written, or left to another rank)."""
    with _LOCK:
        for task in tasks:
            _UNFINISHED.pop(task, None)


def unfinished_line() -> str | None:
    """The last line of a harness CLI that began our tasks and did not finish them; None when
    every task it began finished."""
    with _LOCK:
        unfinished = dict(_UNFINISHED)
    if not unfinished:
        return None
    harness = next(iter(unfinished.values()))
    return (
        f"siuo-task: {harness} stopped before finishing {', '.join(sorted(unfinished))} (its error is above); "
        f"ending with status {UNFINISHED_STATUS} instead of {harness}'s 0"
    )


def _exit_status() -> None:
    with _LOCK:
        banners = list(_BANNERS.values())
    unfinished = unfinished_line()
    if unfinished is not None:
        print_last(unfinished)
        exit_now(UNFINISHED_STATUS)
    if not banners:
        return
    for banner in banners:
        print_last(banner)
    exit_now(JUDGE_ERROR_STATUS)


def finish_task(task: str, values: Values, reducers: Mapping[str, Reducer], output: str | None) -> TaskSummary:
    """A harness task's end: its summary, and its judge errors reported (the banner naming the
    command that finishes the scoring, and the exit status of a harness CLI)."""
    summary = task_summary(values, reducers)
    if warning := not_sampled_warning(task, summary.metrics):
        logging.getLogger(__name__).warning("siuo-task: %s", warning)
    report_judge_errors(task, [item_counts(value) for value in values], output)
    return summary
