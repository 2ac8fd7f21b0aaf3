"""SIUO's settings from the environment, read once where a process starts and handed down.

Each entry point takes one ``Settings`` when it starts: ``siuo-eval`` in ``main``, a YAML
harness's run when it builds its documents (``siuo_task.harness.task_hooks.begin_run``),
Inspect when it builds a task, VLMEvalKit when it builds a dataset. Everything below them gets
the values it needs as arguments, so no scoring, judging or reading code looks at the
environment, and a value cannot change half-way through a run. Each setting is parsed when first
asked for (a report never fails on a bad judge variable it does not use), from the variables
as they were when the entry point started.

The judge client's own variables (``SIUO_JUDGE_*``) are parsed by ``siuo_task.judge.config``
from the mapping handed to it here; the machine facts the judge's limits need (mounts, the
runtime folder) by ``siuo_task.judge.filesystems``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path

from siuo_task.benchmark.data import DATA_DIR_ENV, SiuoData, load_siuo
from siuo_task.benchmark.reasoning import ReasoningSettings
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engines import AnyJudge, judge_from_env


class Settings:
    """The variables as an entry point found them, and what SIUO reads from them."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        # A copy: later changes to the process environment do not reach a run already begun.
        # Kept private and never shown (it holds the judge's key).
        self._environ = dict(environ)

    @classmethod
    def from_env(cls) -> Settings:
        """The process's environment now: call this where the process (or a run) starts."""
        return cls(os.environ)

    def __repr__(self) -> str:
        return f"Settings({len(self._environ)} variables)"

    def with_variables(self, overrides: Mapping[str, str | None]) -> Settings:
        """These settings with some variables given other values (None or "": left as they are),
        e.g. a task parameter that takes precedence over its variable."""
        return Settings({**self._environ, **{name: value for name, value in overrides.items() if value}})

    @cached_property
    def reasoning(self) -> ReasoningSettings:
        """SIUO_REASONING_TAGS and SIUO_JUDGE_TRACES (a bad value raises ReasoningConfigError)."""
        return ReasoningSettings.from_env(self._environ)

    def judge(self, require_key: bool = True) -> AnyJudge:
        """The panel SIUO_JUDGE_PANEL names, else the one judge of SIUO_JUDGE_*."""
        return judge_from_env(self._environ, require_key)

    def one_judge(self, require_key: bool = True) -> JudgeConfig:
        """The one judge of SIUO_JUDGE_* (commands that take no panel, such as ``build``)."""
        return JudgeConfig.from_env(self._environ, require_key)

    @property
    def data_dir(self) -> str | None:
        """$SIUO_DATA_DIR, or None (the pinned hub snapshot)."""
        return self._environ.get(DATA_DIR_ENV) or None

    def data(self, data_dir: str | os.PathLike[str] | None = None) -> SiuoData:
        """The validated items: from ``data_dir`` when given, else $SIUO_DATA_DIR, else the hub."""
        if data_dir is not None:
            return load_siuo(data_dir)
        if self.data_dir is not None:
            return load_siuo(Path(self.data_dir), named_by=f"${DATA_DIR_ENV}")
        return load_siuo(None)

    def variable(self, name: str) -> str:
        """One variable as the entry point found it, stripped ("" when unset)."""
        return self._environ.get(name, "").strip()

    @property
    def first_process(self) -> bool:
        """The launch's first process ($RANK unset or 0 under torchrun / accelerate)."""
        return self._environ.get("RANK", "0") in ("", "0")

    @property
    def first_on_machine(self) -> bool:
        """The first process on this machine ($LOCAL_RANK unset or 0)."""
        return self._environ.get("LOCAL_RANK", "0") in ("", "0")
