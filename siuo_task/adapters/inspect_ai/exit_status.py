"""``inspect eval`` exits 0 when a task ends in error (a sample's error fails the task, and the
command reports per-task outcomes only in the logs): a run of our tasks whose log is not a
success ends the command with status 1 and one line naming the tasks (siuo_task.harness.run_end).

A registry hook (Inspect's ``@hooks``), registered when the ``inspect`` command builds one of our
tasks (``install``), so other evaluations never run it, and after Inspect lists the hooks it
starts with, so a run's first lines stay Inspect's and ours.
"""

from __future__ import annotations

import threading

from inspect_ai.hooks import Hooks, TaskEnd, TaskStart, hooks

from siuo_task.harness.api import TASKS, exit_nonzero_if_judge_failed, running_cli, task_finished, task_started

PREFIX = "siuo_task/"


def _our_task(name: str) -> str | None:
    """Our task's eval-card name (Inspect logs the name a task gives itself: ``siuo_mcq``)."""
    name = name.removeprefix(PREFIX)
    return name if name in TASKS else None


_INSTALLED = threading.Event()


def install() -> None:
    """Register the hook, once, under the ``inspect`` command (in-process callers of
    ``inspect_ai.eval`` read the logs' statuses themselves)."""
    if _INSTALLED.is_set() or not running_cli("inspect"):
        return
    _INSTALLED.set()
    hooks(name="siuo_task_exit_status", description="ends `inspect eval` non-zero when a SIUO task fails")(
        SiuoExitStatus
    )


class SiuoExitStatus(Hooks):
    async def on_task_start(self, data: TaskStart) -> None:
        task = _our_task(data.spec.task)
        if task is not None:
            exit_nonzero_if_judge_failed("inspect")
            task_started("Inspect", [task])

    async def on_task_end(self, data: TaskEnd) -> None:
        task = _our_task(data.log.eval.task)
        # A cancelled run (Ctrl-C) ends through siuo_task.adapters.inspect_ai.interrupts.
        if task is not None and data.log.status in ("success", "cancelled"):
            task_finished([task])
