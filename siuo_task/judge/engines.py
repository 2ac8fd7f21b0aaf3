"""Making an engine for the judge configured: one judge (``JudgeEngine``) or a panel
(``PanelEngine``, its judges' outcomes combined by the vote its caller brings)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine
from siuo_task.judge.panel import Combine, PanelConfig, PanelEngine, panel_from_env
from siuo_task.judge.transport import Transport

AnyJudge = JudgeConfig | PanelConfig
AnyEngine = JudgeEngine | PanelEngine


def judge_from_env(environ: Mapping[str, str], require_key: bool = True) -> AnyJudge:
    """The panel SIUO_JUDGE_PANEL names in ``environ`` (the variables an entry point read), else
    the one judge of SIUO_JUDGE_* (JudgeConfig.from_env)."""
    panel = panel_from_env(environ, require_key)
    return panel if panel is not None else JudgeConfig.from_env(environ, require_key)


def new_engine(
    config: AnyJudge,
    vote: Combine,
    transports: Sequence[Transport | None] | None = None,
    errors_after_outage: bool = False,
) -> AnyEngine:
    """An engine for one judge, or one per judge of a panel whose outcomes ``vote`` combines.

    Args:
        config: the judge, or the panel (``PanelConfig.of(judges, source)`` for judges
            configured elsewhere, e.g. the models bound to Inspect's grader role).
        vote: a panel's outcome for one request from its judges' outcomes (unused for one judge).
        transports: per judge, what sends its calls (None: HTTP to the judge's endpoint).
        errors_after_outage: see ``JudgeEngine`` (a harness run keeps its responses); a panel
            always keeps every answer: a judge given up after an outage is a stopped judge.
    """
    if isinstance(config, PanelConfig):
        return PanelEngine(config, vote, transports)
    return JudgeEngine(config, transports[0] if transports else None, errors_after_outage)


def judges_of(config: AnyJudge) -> tuple[JudgeConfig, ...]:
    return config.judges if isinstance(config, PanelConfig) else (config,)
