"""The judge of a VLMEvalKit run: SIUO_JUDGE_*, or the model VLMEvalKit's ``--judge`` names.

VLMEvalKit users pick a judge with ``--judge MODEL`` (and ``--judge-base-url`` / ``--judge-key``)
and point its client at a server with ``OPENAI_API_BASE``, which is often the full
``.../v1/chat/completions`` URL. With ``--judge`` on the command line, SIUO is judged by that
model (the name is sent as given: VLMEvalKit's short names are its own), at the first of
``--judge-base-url``, ``SIUO_JUDGE_BASE_URL``, ``OPENAI_API_BASE`` (its ``/chat/completions``
removed) and ``OPENAI_BASE_URL``, else OpenAI; the key is ``--judge-key``, else
``SIUO_JUDGE_API_KEY`` / ``OPENAI_API_KEY``. Every other setting is SIUO_JUDGE_*'s.

A panel (``SIUO_JUDGE_PANEL``) and ``--judge`` both name the judge: the run is refused.

Without ``--judge``, VLMEvalKit may still hand a judge name of its own choosing (a default per
dataset type) to ``evaluate``: that name is not the user's, so the judge stays SIUO_JUDGE_*.
A direct call of ``evaluate(file, model=...)`` (not VLMEvalKit's runner) names its judge too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from siuo_task.harness.api import PANEL_VARIABLE, AnyJudge, JudgeConfig, JudgeConfigError, Settings, cli_option

_CHAT_ROUTE = "/chat/completions"


def base_url_of(api_base: str) -> str:
    """A chat-completions URL as VLMEvalKit takes it (``.../v1/chat/completions``) as the base
    URL the OpenAI client takes (``.../v1``); a base URL stays as it is."""
    url = api_base.strip().rstrip("/")
    return url.removesuffix(_CHAT_ROUTE)


def requested_judge(judge_kwargs: Mapping[str, Any] | None = None) -> str | None:
    """The judge model the user named: ``--judge`` on VLMEvalKit's command line, or ``model`` in
    a direct call's ``judge_kwargs``; None when only VLMEvalKit's own default names one."""
    named = cli_option("--judge")
    if named:
        return named.strip()
    model = (judge_kwargs or {}).get("model")
    runner = cli_option("--data") is not None  # VLMEvalKit's runner, which fills in defaults
    return str(model).strip() if model and not runner else None


def vlmeval_judge(
    judge_kwargs: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None, require_key: bool = True
) -> tuple[AnyJudge, str | None]:
    """The judge settings (see the module doc) and, when ``--judge`` chose the judge, a line
    saying which model and endpoint are used and where the endpoint came from.

    Raises:
        JudgeConfigError: as JudgeConfig.from_env (e.g. no key and no base URL) or the panel
            file; ``--judge`` with SIUO_JUDGE_PANEL.
    """
    env = dict(os.environ if environ is None else environ)
    model = requested_judge(judge_kwargs)
    if model is None:
        return Settings(env).judge(require_key), None
    if env.get(PANEL_VARIABLE, "").strip():
        raise JudgeConfigError(
            f"the judge is named twice: by --judge {model} and by {PANEL_VARIABLE}={env[PANEL_VARIABLE]}; use one"
        )
    kwargs = judge_kwargs or {}
    env["SIUO_JUDGE_MODEL"] = model
    source = "SIUO_JUDGE_BASE_URL"
    # VLMEvalKit hands --judge-base-url to evaluate as api_base, the chat route appended.
    api_base = kwargs.get("api_base") or cli_option("--judge-base-url")
    if api_base:
        env["SIUO_JUDGE_BASE_URL"], source = base_url_of(str(api_base)), "--judge-base-url"
    elif not env.get("SIUO_JUDGE_BASE_URL", "").strip() and env.get("OPENAI_API_BASE", "").strip():
        env["SIUO_JUDGE_BASE_URL"] = base_url_of(env["OPENAI_API_BASE"])
        removed = f", its '{_CHAT_ROUTE}' removed" if env["OPENAI_API_BASE"].rstrip("/").endswith(_CHAT_ROUTE) else ""
        source = f"OPENAI_API_BASE{removed}"
    elif not env.get("SIUO_JUDGE_BASE_URL", "").strip():
        source = "OPENAI_BASE_URL" if env.get("OPENAI_BASE_URL", "").strip() else "the default"
    key = kwargs.get("key") or cli_option("--judge-key")
    if key:
        env["SIUO_JUDGE_API_KEY"] = str(key)
    config = JudgeConfig.from_env(env, require_key=require_key)
    return config, f"judge: --judge {model} at {config.endpoint} (endpoint from {source})"


def say_judge(line: str | None) -> None:
    """Print which judge ``--judge`` chose (stderr, as the other siuo-task lines)."""
    if line:
        print(f"siuo-task: {line}", file=sys.stderr, flush=True)
