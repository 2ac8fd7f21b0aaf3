"""What a harness run was started with: reading its command line, never changing it.

The banners and the interrupt line name the command that finishes or resumes the work, and the
hooks read the harness's own options (its output folder, its log folder) from here.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path


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


def running_cli(*modules: str) -> bool:
    """This process is one of these harness CLIs (``lmms-eval``, ``python -m lmms_eval``, or a
    launcher such as torchrun / accelerate running that module)."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    names = {module.replace("_", "-") for module in modules} | set(modules)
    return argv0.name in names or (argv0.name == "__main__.py" and argv0.parent.name in modules)


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
