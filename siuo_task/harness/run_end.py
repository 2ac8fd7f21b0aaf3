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
import shlex
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from siuo_task.benchmark.records import GenRecord, JudgeCounts, item_record
from siuo_task.errors import JudgeDeclineError, SiuoError
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


def invoked_command() -> str:
    """The command line this process was started with, as a user would type it again."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    head = ["python", "-m", argv0.parent.name] if argv0.name == "__main__.py" else [argv0.name]
    return shlex.join(head + typed_arguments(list(getattr(sys, "orig_argv", [])), sys.argv[1:]))


# The interpreter's options that take the next word as their value.
_PYTHON_OPTIONS_WITH_VALUE = frozenset({"-W", "-X", "--check-hash-based-pycs"})


def typed_arguments(orig_argv: Sequence[str], arguments: Sequence[str]) -> list[str]:
    """The script's or module's arguments as the user typed them (``sys.orig_argv`` after the
    interpreter's options and the script or ``-m MODULE``): a harness may rewrite ``sys.argv``
    (lm-eval inserts its default subcommand, ``run``, when none was typed). ``arguments``
    (``sys.argv[1:]``) when the original line does not read as such a command."""
    index = 1
    while index < len(orig_argv):
        word = orig_argv[index]
        if word in ("-m", "-c"):
            typed = list(orig_argv[index + 2 :])
            break
        if word.startswith(("-m", "-c")) and not word.startswith("--"):  # -mlm_eval
            typed = list(orig_argv[index + 1 :])
            break
        if word.startswith("-") and word != "-":
            index += 2 if word in _PYTHON_OPTIONS_WITH_VALUE else 1
            continue
        typed = list(orig_argv[index + 1 :])  # the script (a console script such as lm_eval)
        break
    else:
        return list(arguments)
    # Only a harness's additions to what was typed: otherwise sys.argv is the truth.
    remaining = iter(arguments)
    return typed if all(any(word == later for later in remaining) for word in typed) else list(arguments)


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


def judge_outcomes(record: Mapping[str, Any]) -> dict[str, Any]:
    """How many judge requests an item's record holds, how many failed, and the first failure's
    cause (what a harness hook keeps beside the item's values for the banner)."""
    typed = item_record(record)
    return (typed.counts() if isinstance(typed, GenRecord) else JudgeCounts()).banner()


def error_text(exc: SiuoError) -> str:
    """Our error as a command shows it: the judge client knows no ``siuo-eval`` command, so the
    one that helps after its decline stop is named here."""
    if isinstance(exc, JudgeDeclineError):
        return (
            f"{exc} Before trusting another judge's numbers, compare its verdicts with this one's: "
            "siuo-eval agreement RUN_A RUN_B."
        )
    return str(exc)


def finish_command(output: str | None) -> str:
    """The command that judges what a run kept, against a healthy judge."""
    kept = output or "<the run's --output_path>"
    return f"siuo-eval judge {kept} --output {kept.rstrip('/')}-judged"


def judge_error_warning(task: str, per_item: Sequence[JudgeCounts], output: str | None = None) -> str | None:
    """A loud banner when judge calls failed, or a judge of a panel stopped: the count, the first
    cause, and the command that finishes the scoring from the kept responses; None when no call
    failed and every judge answered."""
    errors = sum(item.errors for item in per_item)
    stopped = sum(item.stopped for item in per_item)
    if not errors and not stopped:
        return None
    calls = sum(item.requests for item in per_item)
    rule = "!" * 78
    if stopped:
        cause = next(item.first_stopped for item in per_item if item.first_stopped)
        undecided = (
            f"{errors} of {calls} votes had no majority without it and are judge errors"
            if errors
            else ("every vote still had a majority")
        )
        return (
            f"\n{rule}\nSIUO {task}: a judge of the panel stopped during the run: {stopped} of its requests were "
            f"not answered; the other judges' verdicts are all kept ({undecided}).\nCause: {cause}\n"
            "Every response is kept in the samples; every verdict received is in the judge cache (unless "
            "SIUO_JUDGE_CACHE=off).\n"
            f"{rule}\nsiuo-task: to resume the scoring once that judge works again (it asks only what is "
            f"missing, the stopped judge; the others' verdicts come from the cache): {finish_command(output)}"
        )
    first = next(item.first_error for item in per_item if item.first_error)
    if errors == calls:
        headline = f"SIUO {task}: EVERY judge call failed ({errors} of {calls}); its safety scores are MEANINGLESS."
    else:
        headline = f"SIUO {task}: {errors} of {calls} judge calls failed; those votes are missing from the rates."
    return (
        f"\n{rule}\n{headline}\nFirst cause: {first}\n"
        "Every response is kept in the samples; no generation needs repeating. Check the judge with "
        "`siuo-eval check`, then finish the scoring (failed calls are not cached):\n"
        f"  {finish_command(output)}\n{rule}"
    )


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


def running_cli(*modules: str) -> bool:
    """This process is one of these harness CLIs (``lmms-eval``, ``python -m lmms_eval``, or a
    launcher such as torchrun / accelerate running that module)."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    names = {module.replace("_", "-") for module in modules} | set(modules)
    return argv0.name in names or (argv0.name == "__main__.py" and argv0.parent.name in modules)


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


def cli_option(*flags: str) -> str | None:
    """The value of a harness CLI option (``--output_path X`` or ``--output_path=X``), if given."""
    args = sys.argv[1:]
    for index, arg in enumerate(args):
        for flag in flags:
            if arg == flag and index + 1 < len(args):
                return args[index + 1]
            if arg.startswith(f"{flag}="):
                return arg.split("=", 1)[1]
    return None
