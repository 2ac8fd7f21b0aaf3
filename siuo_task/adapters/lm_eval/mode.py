"""What kind of lm-eval run this is, seen from inside a task hook."""

from __future__ import annotations

import sys

from siuo_task.harness.api import running_cli


def predict_only() -> bool:
    """Whether lm-eval runs generation only (``--predict_only`` / ``-x``, or
    ``simple_evaluate(predict_only=True)``), when no judge is needed.

    lm-eval builds the datasets inside simple_evaluate before it applies predict_only to the
    tasks, and hands custom_dataset only the task's metadata: simple_evaluate's own argument,
    read from the calling frames, is the one signal that also covers the Python API and config
    files. The CLI flag is the fallback when no such frame is found, read only in lm-eval's own
    CLI (another program's ``-x``, e.g. pytest's, means something else).
    """
    frame = sys._getframe(1)
    try:
        while frame is not None:
            code = frame.f_code
            if code.co_name == "simple_evaluate" and frame.f_globals.get("__name__") == "lm_eval.evaluator":
                return bool(frame.f_locals.get("predict_only", False))
            frame = frame.f_back  # type: ignore[assignment]
    finally:
        del frame
    flags = sys.argv[1:] if running_cli("lm_eval") else []
    return any(arg.replace("-", "_") == "__predict_only" or arg == "-x" for arg in flags)
