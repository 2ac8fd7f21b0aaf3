"""A panel of judges (``SIUO_JUDGE_PANEL=panel.yaml``): several judges asked the same requests,
their outcomes combined by a rule the caller brings.

The file lists the judges::

    judges:
      - {model: gpt-4o-mini-2024-07-18}
      - {model: Qwen/Qwen2.5-VL-72B-Instruct, base_url: http://127.0.0.1:8000/v1}
      - {model: claude-..., base_url: https://..., api_key_env: ANTHROPIC_API_KEY}

Every other setting (max tokens, concurrency, timeouts, retries, rate limits, cache, decline
watch) comes from the same ``SIUO_JUDGE_*`` variables as for one judge and applies to each judge
on its own: each judge has its own engine, so its own bound, rate schedule, decline watch and
cache keys (the key names the judge's model and endpoint, so adding a judge to a panel re-uses
what the others judged). A judge's key comes only from the variable it names (``api_key_env``),
else from SIUO_JUDGE_API_KEY / OPENAI_API_KEY; the file never holds a key.

This module knows nothing of any benchmark: the combination of the judges' outcomes (a vote)
is given to ``PanelEngine`` by its caller.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from siuo_task.errors import JudgeConfigError
from siuo_task.judge.config import OPENAI_DEFAULT_BASE_URL, JudgeConfig
from siuo_task.judge.engine import CallTally, JudgeEngine
from siuo_task.judge.request import JudgeOutcome, JudgeRequest
from siuo_task.judge.transport import Transport

PANEL_VARIABLE = "SIUO_JUDGE_PANEL"
_JUDGE_FIELDS = frozenset({"model", "base_url", "api_key_env"})
# What a panel's judge does not take from the one-judge variables: it names its own.
_OWN_VARIABLES = ("SIUO_JUDGE_MODEL", "SIUO_JUDGE_BASE_URL", "OPENAI_BASE_URL", "SIUO_JUDGE_API_KEY", "OPENAI_API_KEY")

# (the request, each judge's outcome in panel order) -> the panel's outcome.
Combine = Callable[[JudgeRequest, Sequence[JudgeOutcome]], JudgeOutcome]


def judge_label(config: JudgeConfig) -> str:
    """How a panel names one of its judges: ``model @ endpoint`` (safe to record: no key)."""
    return f"{config.model} @ {config.endpoint}"


def split_label(label: str) -> tuple[str, str]:
    """(model, endpoint) of a ``judge_label``."""
    model, _, endpoint = label.rpartition(" @ ")
    return model, endpoint


@dataclass(frozen=True, slots=True)
class PanelConfig:
    """The judges of a panel, in order, and where they were named (the file, or e.g. a harness's
    model role); ``of`` makes one from judges configured elsewhere."""

    source: str
    judges: tuple[JudgeConfig, ...]

    @classmethod
    def of(cls, judges: Sequence[JudgeConfig], source: str) -> PanelConfig:
        """A panel of ``judges`` (each with its own model, endpoint and key).

        Raises:
            JudgeConfigError: an even number of judges (a majority of two values must always
                exist), or the same judge twice; the message starts with ``source``.
        """
        if len(judges) % 2 == 0:
            raise JudgeConfigError(
                f"{source}: a panel needs an odd number of judges so that every vote has a majority; "
                f"this one names {len(judges)}"
            )
        labels = [judge_label(judge) for judge in judges]
        if len(set(labels)) != len(labels):
            twice = sorted({label for label in labels if labels.count(label) > 1})
            raise JudgeConfigError(f"{source}: the same judge is named twice: {', '.join(twice)}")
        return cls(source, tuple(judges))

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(judge_label(judge) for judge in self.judges)

    @property
    def model(self) -> str:
        """The panel as a judge name in results: ``panel(<judge>; <judge>; ...)``."""
        return "panel(" + "; ".join(judge.model for judge in self.judges) + ")"

    @property
    def endpoint(self) -> str:
        return "; ".join(judge.endpoint for judge in self.judges)

    @property
    def temperature(self) -> float:
        return self.judges[0].temperature

    @property
    def max_tokens(self) -> int:
        return self.judges[0].max_tokens

    @property
    def cache_path(self) -> Path | None:
        return self.judges[0].cache_path

    @classmethod
    def from_file(cls, path: Path, environ: Mapping[str, str], require_key: bool = True) -> PanelConfig:
        """Read a panel file; the other settings come from ``environ`` (the variables the entry
        point read).

        Raises:
            JudgeConfigError: a file that cannot be read, a judge without a model, an unknown
                field, a key variable that is not set, two identical judges, or an even number
                of judges (a majority of two values must always exist).
        """
        env = environ
        where = f"{PANEL_VARIABLE}={path}"
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise JudgeConfigError(f"{where}: cannot read the panel file: {type(exc).__name__}: {exc}") from None
        entries = data.get("judges") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not entries:
            raise JudgeConfigError(f"{where}: the file must hold 'judges:', a list of {{model: ..., base_url: ...}}")
        judges = [_judge(entry, number, where, env, require_key) for number, entry in enumerate(entries, 1)]
        return cls.of(judges, where)


def _judge(entry: Any, number: int, where: str, env: Mapping[str, str], require_key: bool) -> JudgeConfig:
    if not isinstance(entry, dict) or not isinstance(entry.get("model"), str) or not entry["model"].strip():
        raise JudgeConfigError(f"{where}: judge {number} needs a 'model' (e.g. {{model: gpt-4o-mini-2024-07-18}})")
    unknown = sorted(set(entry) - _JUDGE_FIELDS)
    if unknown:
        raise JudgeConfigError(
            f"{where}: judge {number} has unknown field(s) {', '.join(unknown)} "
            f"(a judge takes {', '.join(sorted(_JUDGE_FIELDS))}; keys come from the variable api_key_env names)"
        )
    own = {name: value for name, value in env.items() if name not in _OWN_VARIABLES}
    own["SIUO_JUDGE_MODEL"] = entry["model"].strip()
    own["SIUO_JUDGE_BASE_URL"] = str(entry.get("base_url") or OPENAI_DEFAULT_BASE_URL)
    key_variable = entry.get("api_key_env")
    if key_variable:
        key = env.get(str(key_variable), "").strip()
        if not key and require_key:
            raise JudgeConfigError(
                f"{where}: judge {number} ({entry['model']}) takes its key from {key_variable}, which is not set"
            )
        if key:
            own["SIUO_JUDGE_API_KEY"] = key
    else:
        for name in ("SIUO_JUDGE_API_KEY", "OPENAI_API_KEY"):
            if env.get(name, "").strip():
                own[name] = env[name]
    if (
        entry.get("base_url") is None
        and require_key
        and "SIUO_JUDGE_API_KEY" not in own
        and "OPENAI_API_KEY" not in own
    ):
        raise JudgeConfigError(
            f"{where}: judge {number} ({entry['model']}) is called at {OPENAI_DEFAULT_BASE_URL} and needs a key: "
            "set OPENAI_API_KEY (or SIUO_JUDGE_API_KEY), or name its variable with api_key_env"
        )
    try:
        return JudgeConfig.from_env(own, require_key=False)
    except JudgeConfigError as exc:
        raise JudgeConfigError(f"{where}: judge {number}: {exc}") from None


def panel_from_env(environ: Mapping[str, str], require_key: bool = True) -> PanelConfig | None:
    """The panel SIUO_JUDGE_PANEL names in ``environ``, or None when it is unset (one judge,
    JudgeConfig.from_env)."""
    raw = environ.get(PANEL_VARIABLE, "").strip()
    if not raw:
        return None
    return PanelConfig.from_file(Path(raw).expanduser(), environ, require_key)


class PanelEngine:
    """One ``JudgeEngine`` per judge, asked the same requests at once; each request's outcome is
    ``combine(request, outcomes in panel order)``, which keeps the judges' own outcomes in
    ``judges`` (see ``JudgeOutcome``).

    A judge that stops (its endpoint refuses, its decline or no-verdict watch trips, or it stays
    down past the outage hold) loses only its own verdicts: every verdict of the others is kept
    and voted on. Each request it did not answer, then and in every later call, is an outcome
    marked ``stopped`` naming it and the cause; ``stopped`` maps each stopped judge to its stop.
    """

    def __init__(
        self, panel: PanelConfig, combine: Combine, transports: Sequence[Transport | None] | None = None
    ) -> None:
        """``transports``: per judge, what sends its calls (None: HTTP to its endpoint), e.g. a
        harness's model API for each model bound to a role."""
        self.config = panel
        senders = list(transports) if transports is not None else [None] * len(panel.judges)
        if len(senders) != len(panel.judges):
            raise ValueError(f"{len(senders)} transport(s) for a panel of {len(panel.judges)} judges")
        # A judge given up after an outage stops like one that refuses (no error outcomes of its
        # own): the panel then records its unanswered requests as ``stopped``.
        self.engines = tuple(JudgeEngine(judge, sender) for judge, sender in zip(panel.judges, senders, strict=True))
        self._combine = combine
        self._lock = threading.Lock()
        self._stopped: dict[str, BaseException] = {}

    @property
    def stopped(self) -> dict[str, BaseException]:
        """Each judge that stopped during the run (its label) and its stop, in panel order."""
        with self._lock:
            return {label: self._stopped[label] for label in self.config.labels if label in self._stopped}

    def grade_many(
        self, requests: Sequence[JudgeRequest], on_done: Callable[[JudgeOutcome], None] | None = None
    ) -> list[JudgeOutcome]:
        """Every judge grades every request (the judges at once, each within its own bounds);
        ``on_done`` sees each judge's outcome as it completes, a stopped judge's included.

        Raises:
            JudgeInterrupted: SIGINT / SIGTERM; every verdict received stays in the cache.
        """
        with ThreadPoolExecutor(max_workers=len(self.engines), thread_name_prefix="siuo-panel") as pool:
            # In the caller's context, as JudgeEngine.grade_many runs each request (a harness
            # that records calls per sample, Inspect's transcript, sees each judge's calls).
            futures = [
                pool.submit(contextvars.copy_context().run, engine.grade_until_stopped, requests, on_done)
                for engine in self.engines
            ]
            for future in futures:
                future.exception()  # every judge finishes before an interrupt is raised
            per_judge = [future.result() for future in futures]
        columns = [
            self._column(label, requests, outcomes, stop, on_done)
            for label, (outcomes, stop) in zip(self.config.labels, per_judge, strict=True)
        ]
        return [self._combine(request, [column[i] for column in columns]) for i, request in enumerate(requests)]

    def _column(
        self,
        label: str,
        requests: Sequence[JudgeRequest],
        outcomes: Sequence[JudgeOutcome | None],
        stop: BaseException | None,
        on_done: Callable[[JudgeOutcome], None] | None,
    ) -> list[JudgeOutcome]:
        """One judge's outcomes, named; a request its stop left unanswered becomes a ``stopped`` error."""
        with self._lock:
            if stop is not None:
                self._stopped.setdefault(label, stop)
            cause = str(self._stopped.get(label, ""))
        column = []
        for request, outcome in zip(requests, outcomes, strict=True):
            if outcome is None:
                outcome = JudgeOutcome(
                    request.kind, None, None, f"{label} had stopped, not answered: {cause}", None, stopped=True
                )
                if on_done is not None:
                    on_done(outcome)
            column.append(replace(outcome, judge=label))
        return column

    def grade(self, request: JudgeRequest) -> JudgeOutcome:
        return self.grade_many([request])[0]

    def tally(self) -> CallTally:
        """What every judge's calls came to, together."""
        tallies = [engine.tally() for engine in self.engines]
        return CallTally(
            sum(tally.verdicts for tally in tallies),
            sum(tally.without_reply for tally in tallies),
            sum(tally.without_verdict for tally in tallies),
        )

    def interrupt(self, cause: BaseException) -> None:
        """Every judge sends no new call from now on (see ``JudgeEngine.interrupt``)."""
        for engine in self.engines:
            engine.interrupt(cause)

    def wait_in_flight(self, timeout_s: float) -> int:
        """Every judge's calls already sent get, together, up to ``timeout_s`` seconds to finish;
        how many are still unanswered then."""
        deadline = time.monotonic() + timeout_s
        return sum(engine.wait_in_flight(deadline - time.monotonic()) for engine in self.engines)

    def kept(self) -> str:
        """What a stopped pass keeps, for its message."""
        caches = [engine.config.cache_path for engine in self.engines]
        if None in caches:
            return "a judge's cache is off, so its verdicts are not kept and a rerun repeats its calls"
        named = ", ".join(sorted({str(path) for path in caches}))
        return f"the {self.tally().verdicts} verdict(s) received are kept in the cache {named}"

    def close(self) -> None:
        for engine in self.engines:
            engine.close()
