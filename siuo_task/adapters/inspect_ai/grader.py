"""The judge as Inspect's ``grader`` model role (``--model-role grader=<provider/model>``, or
``eval(..., model_roles={"grader": ...})``), as inspect_evals' graded evals take theirs.

When the role is bound, every judge call of the siuo_gen tasks (the pre-generation check and
the scoring) is sent through Inspect's model API by ``GraderTransport`` instead of our HTTP
client: the same prompt, image, temperature, max tokens and parser, through the same engine
(cache, coalescing, retries, decline and no-verdict watches). Each call is made on Inspect's
event loop in the context of the sample it grades, so the sample's transcript records it as a
model event of the grader (``inspect view`` shows the judge's reply beside the sample).

A list bound to the role (``grader=a,b,c``) is a panel: every verdict is the majority of the
graders (``siuo_task.benchmark.panel_vote``, as ``SIUO_JUDGE_PANEL``), each grader with its own engine and
cache keys, each checked before generation; an even number is refused at start.

The cache key names the model the provider is asked for (for ``openai-api/grade/judge-x``,
``judge-x``) and the provider's base URL: a judge reached through the role and through
``SIUO_JUDGE_*`` at the same URL shares its cached verdicts. With no base URL (a provider's
default endpoint) the key names the provider (``inspect://anthropic``); OpenAI's default is
``https://api.openai.com/v1``, as for ``SIUO_JUDGE_*``.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import anyio

from siuo_task.harness.api import (
    OPENAI_DEFAULT_BASE_URL,
    PLACEHOLDER_KEY,
    AnyEngine,
    AnyJudge,
    JudgeConfig,
    JudgeConfigError,
    JudgeRequest,
    PanelConfig,
    image_data_url,
    judges_of,
    new_engine,
    redact_keys,
)

if TYPE_CHECKING:
    from anyio.lowlevel import EventLoopToken
    from inspect_ai.model import Model, ModelOutput

GRADER_ROLE = "grader"
# A call's whole wait on Inspect's loop, in attempt timeouts (see GraderTransport._generate).
_WAIT_FACTOR = 3
# The settings that name a judge endpoint: with the role bound, the role names it instead.
_ENDPOINT_VARIABLES = frozenset(
    {"SIUO_JUDGE_MODEL", "SIUO_JUDGE_BASE_URL", "SIUO_JUDGE_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY"}
)
# Inspect's event loop, set by the coroutine that hands judging to a worker thread: the calls
# are made back on it, in the sample's context (the engine runs each request in its caller's).
_LOOP: ContextVar[EventLoopToken | None] = ContextVar("siuo_grader_loop", default=None)


def bound_graders() -> list[Model]:
    """The models bound to the grader role for the running task ([] when it is not bound: the
    judge is then SIUO_JUDGE_*). Unlike ``get_model(role=...)``, never the model under test."""
    from inspect_ai.model import model_roles

    bound = model_roles().get(GRADER_ROLE)
    if bound is None:
        return []
    return list(bound) if isinstance(bound, list) else [bound]


ROLE_SOURCE = "--model-role grader"


def grader_judge(
    models: list[Model], judge_model: str | None = None, judge_base_url: str | None = None
) -> AnyJudge | None:
    """The bound grader's judge settings, or a panel's when a list is bound (every verdict the
    majority of the graders, as ``SIUO_JUDGE_PANEL``); None when the role is unbound.

    Raises:
        JudgeConfigError: the ``judge_model`` / ``judge_base_url`` task parameters name a judge
            besides the role; an even number of graders, or the same one twice.
    """
    if not models:
        return None
    if judge_model or judge_base_url:
        raise JudgeConfigError(
            "the judge is named twice: by the grader role and by the judge_model / judge_base_url task "
            "parameters; use one of them"
        )
    judges = [grader_config(model) for model in models]
    return judges[0] if len(judges) == 1 else PanelConfig.of(judges, ROLE_SOURCE)


def cli_grader() -> str | None:
    """What ``inspect eval --model-role grader=...`` binds, as written; None when the running
    command binds no grader or cannot be read here (the Python API).

    Raises:
        JudgeConfigError: an even number of graders (a panel's vote needs a majority).
    """
    import click

    context = click.get_current_context(silent=True)
    roles = context.params.get("model_role") if context is not None else None
    for binding in roles or ():
        role, _, spec = str(binding).partition("=")
        if role.strip() != GRADER_ROLE:
            continue
        spec = spec.strip()
        graders = spec.count(",") + 1 if not spec.startswith(("{", "[")) else 1
        if graders % 2 == 0:
            # Refused here, before anything runs, as PanelConfig.of refuses it once the role is bound.
            raise JudgeConfigError(
                f"{ROLE_SOURCE}={spec}: a panel needs an odd number of judges so that every vote has a majority; "
                f"this one names {graders}"
            )
        return spec
    return None


def served_name(model: Model) -> str:
    """The model name the provider is asked for (what SIUO_JUDGE_MODEL would be)."""
    service_name = getattr(model.api, "service_model_name", None)
    return str(service_name()) if callable(service_name) else model.name


def endpoint_identity(model: Model) -> str:
    """The provider's base URL, or a stable name for its default endpoint (see the module doc)."""
    base_url = model.api.base_url
    if base_url and urlsplit(base_url).scheme in ("http", "https") and urlsplit(base_url).hostname:
        return base_url.rstrip("/")
    provider = str(model).removesuffix(f"/{model.name}") or str(model)
    return OPENAI_DEFAULT_BASE_URL if provider == "openai" else f"inspect://{provider}"


def grader_config(model: Model, environ: Mapping[str, str] | None = None) -> JudgeConfig:
    """The judge settings for the bound grader: its name and endpoint, and every other setting
    (max tokens, concurrency, cache, watches) from SIUO_JUDGE_* as for any judge. No key is
    read: the provider has its own."""
    env = os.environ if environ is None else environ
    tuning = JudgeConfig.from_env({k: v for k, v in env.items() if k not in _ENDPOINT_VARIABLES}, require_key=False)
    return replace(tuning, model=served_name(model), base_url=endpoint_identity(model), api_key=PLACEHOLDER_KEY)


@lru_cache(maxsize=4)
def grader_engine(config: AnyJudge) -> AnyEngine:
    """One engine per grader (or panel of graders) per process, shared by every sample (as
    ``shared_engine``); a panel's judge i is the role's model i."""
    transports = [GraderTransport(judge, index) for index, judge in enumerate(judges_of(config))]
    return new_engine(config, transports, errors_after_outage=True)


def grader_transports(config: AnyJudge) -> list[tuple[JudgeConfig, GraderTransport]]:
    """Each grader's settings and transport (for the check before generation)."""
    return [(judge, GraderTransport(judge, index)) for index, judge in enumerate(judges_of(config))]


def check_graders_before_the_run(config: AnyJudge, models: list[Model]) -> None:
    """The check before generation of each grader bound to the role, made while Inspect builds
    the task (before any sample starts), so a dead, missing or refusing grader ends ``inspect
    eval`` the way a dead ``SIUO_JUDGE_*`` judge does: one line naming it, exit status 1.

    Inspect builds tasks synchronously inside its running event loop, where no call can be
    awaited, and the bound models' clients belong to that loop. So each grader is called
    through a fresh model for the same provider, model, base URL and settings, on an event loop
    of its own in a worker thread, then closed. A grader that passes is recorded as checked
    (``siuo_task.harness.preflight``): the samples' setup sends it no second call.

    Raises:
        JudgeEndpointError, JudgeNoVerdictError: a grader that cannot grade (naming it).
    """
    failures: list[BaseException] = []

    def check() -> None:
        try:
            anyio.run(_check_copies, config, models)
        except BaseException as exc:  # re-raised in the thread that builds the task
            failures.append(exc)

    worker = threading.Thread(target=check, name="siuo-grader-check", daemon=True)
    worker.start()
    worker.join()
    if failures:
        raise failures[0]


async def _check_copies(config: AnyJudge, models: list[Model]) -> None:
    from siuo_task.harness.api import Settings, check_judge_before_generation

    settings = Settings.from_env()
    copies = [_fresh_copy(model) for model in models]
    try:
        with on_this_loop():
            for index, (judge, copy) in enumerate(zip(judges_of(config), copies, strict=True)):
                transport = GraderTransport(judge, index, copy)
                await anyio.to_thread.run_sync(check_judge_before_generation, judge, settings, None, transport)
    finally:
        for copy in copies:
            await copy.api.aclose()


def _fresh_copy(model: Model) -> Model:
    """A new model for the same provider, model name, base URL, key and settings as ``model``,
    with a client of its own (not memoized, so the run's model is left untouched)."""
    from inspect_ai.model import get_model

    return get_model(
        str(model),
        config=model.config,
        base_url=model.api.base_url,
        api_key=model.api.api_key,
        memoize=False,
        **model.model_args,
    )


@contextmanager
def on_this_loop() -> Iterator[None]:
    """Within: judge calls made from worker threads run on the calling coroutine's event loop,
    in its context (for a scorer, the sample's)."""
    from anyio.lowlevel import current_token

    reset = _LOOP.set(current_token())
    try:
        yield
    finally:
        _LOOP.reset(reset)


class GraderTransport:
    """Sends judge requests through Inspect's model API to the grader role's model.

    Called from the engine's worker threads; each call runs on Inspect's event loop (see
    ``on_this_loop``). Inspect's own retries are turned off for these calls: the engine retries,
    so its retry counts, outage breaker and stops see every failure. A provider's errors are
    read by the engine's rules where they are the openai client's (Inspect's openai and
    openai-api providers raise them); others end the request as a judge error.
    """

    def __init__(self, config: JudgeConfig, index: int = 0, model: Model | None = None) -> None:
        """``model``: the model to call (for the check while the task is built); else the role's
        model ``index`` (a list bound to the role) of the running task."""
        self.config = config
        self._index = index
        self._own_model = model
        # Adapted after a 400 naming it, as ChatTransport does.
        self.sends_temperature = True

    def request_body(self, request: JudgeRequest) -> dict[str, Any]:
        raise JudgeConfigError(
            "batch judging sends files to an OpenAI endpoint set by SIUO_JUDGE_*; Inspect's grader role cannot "
            "take a batch"
        )

    def send(self, request: JudgeRequest, timeout_s: float | None = None) -> Any:
        """One call to the grader; a chat-completion object read by the request's own parser."""
        import anyio.from_thread
        import tenacity

        token = _LOOP.get()
        if token is None:
            raise RuntimeError("the grader role's judge was called outside Inspect's event loop (see on_this_loop)")
        try:
            output = anyio.from_thread.run(self._generate, request, timeout_s, token=token)
        except tenacity.RetryError as exc:  # Inspect's retry wrapper, with its retries off
            failure = exc.last_attempt.exception()
            raise (failure if isinstance(failure, Exception) else exc) from None
        except TimeoutError as exc:
            raise _timeout_error() from exc
        return completion_from_output(output)

    async def _generate(self, request: JudgeRequest, timeout_s: float | None) -> ModelOutput:
        from inspect_ai.model import ChatMessageUser, Content, ContentImage, ContentText, GenerateConfig

        content: list[Content] = [ContentText(text=request.prompt)]
        if request.image_path is not None:
            content.append(ContentImage(image=image_data_url(request.image_path)))
        attempt_s = math.ceil(timeout_s or self.config.timeout_s)
        config = GenerateConfig(
            max_tokens=self.config.max_tokens,
            temperature=self.config.temperature if self.sends_temperature else None,
            max_retries=0,
            attempt_timeout=attempt_s,
            extra_body={"response_format": {"type": "json_object"}} if request.json_reply else None,
        )
        # The attempt's timeout bounds the HTTP call only; this bounds the wait before it too
        # (a connection slot, or a call begun as Inspect cancels the eval, which may never be
        # dispatched), so a worker thread waiting here always gets an answer.
        with anyio.fail_after(_WAIT_FACTOR * attempt_s):
            return await self._model().generate([ChatMessageUser(content=content)], config=config)

    def _model(self) -> Model:
        if self._own_model is not None:
            return self._own_model
        graders = bound_graders()
        if len(graders) <= self._index:
            raise JudgeConfigError("the grader role is no longer bound (the judge was set up for another task)")
        return graders[self._index]

    def adapt(self, exc: Exception) -> str | None:
        """A 400 naming ``temperature``: send the model's default; the provider picks its own
        token parameter (``max_tokens`` cannot be adapted here)."""
        message = str(exc).lower()
        if _status(exc) == 400 and "temperature" in message and self.sends_temperature:
            self.sends_temperature = False
            return "temperature"
        return None

    def refusal_message(self, exc: BaseException) -> str:
        """What a failure of the grader means, naming it and the cause (as ChatTransport's)."""
        where = f"the grader {self.config.model} at {self.config.endpoint}"
        detail = self.redact(str(exc))
        status = _status(exc)
        if status in (401, 403):
            return f"{where} refused the API key (HTTP {status}: {detail}); set the key Inspect reads for this provider"
        if status == 404:
            return (
                f"{where} answered HTTP 404 ({detail}); bind the grader role to a model the provider serves (for an "
                "OpenAI-compatible server, at a base URL ending in '/v1')"
            )
        if status is not None:
            return f"{where} answered HTTP {status}: {detail}"
        return f"cannot reach {where} ({type(exc).__name__}: {detail}); is the server up and the URL right?"

    def redact(self, text: str) -> str:
        """Anything key-shaped out of text bound for logs (the provider's key is never read here)."""
        return redact_keys(text)

    def close(self) -> None:
        """Nothing to release: Inspect owns the model's connections."""


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _timeout_error() -> Exception:
    """An attempt past its time, as the openai client's timeout (which the engine retries). The
    error is only read for its type and message; its request object (an httpx type whose module
    differs between openai releases) is left empty."""
    import openai

    return openai.APITimeoutError(request=cast(Any, None))


def completion_from_output(output: ModelOutput) -> Any:
    """Inspect's output as a chat completion: the reply's text (reasoning set apart by the
    provider is not part of it), the model that answered, the tokens spent."""
    from openai.types.chat import ChatCompletion

    usage = output.usage
    return ChatCompletion.model_validate(
        {
            "id": "inspect-grader",
            "object": "chat.completion",
            "created": 0,
            "model": output.model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": output.completion if output.choices else None},
                }
            ],
            "usage": {
                "prompt_tokens": usage.input_tokens if usage else 0,
                "completion_tokens": usage.output_tokens if usage else 0,
                "total_tokens": usage.total_tokens if usage else 0,
            },
        }
    )
