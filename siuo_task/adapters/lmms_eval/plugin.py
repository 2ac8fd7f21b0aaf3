"""Makes ``lmms-eval --tasks siuo_gen`` work after ``pip install`` with no --include_path.

lmms-eval has no entry-point group for tasks. It does load the ``lmms_eval.models``
entry-point group when ``lmms_eval.models`` is imported, which happens before the CLI builds
its task index. ``register`` is that entry point: it returns no model manifests and teaches
TaskManager to index our task folder as if it had been passed with --include_path.
"""

from __future__ import annotations

import functools
from typing import Any

from siuo_task.adapters.lmms_eval import tasks_dir

_MARK = "_siuo_task_include_path"


def register() -> list[Any]:
    """Entry point for ``lmms_eval.models``: add our task folder, register no models."""
    from lmms_eval.tasks import TaskManager

    original = TaskManager.initialize_tasks
    if getattr(original, _MARK, False):
        return []

    @functools.wraps(original)
    def initialize_tasks(self: Any, include_path: Any = None, include_defaults: bool = True) -> Any:
        paths = [] if include_path is None else [include_path] if isinstance(include_path, str) else list(include_path)
        ours = str(tasks_dir())
        if ours not in paths:
            # Appended last: lmms-eval lets earlier paths win, so a user's --include_path or a
            # built-in task of the same name is never shadowed by ours.
            paths.append(ours)
        return original(self, include_path=paths, include_defaults=include_defaults)

    setattr(initialize_tasks, _MARK, True)
    TaskManager.initialize_tasks = initialize_tasks  # type: ignore[method-assign]
    return []
