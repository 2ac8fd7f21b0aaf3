"""Exceptions raised by siuo_task; every message names the culprit and the fix."""

from __future__ import annotations

import copy


class SiuoError(Exception):
    """Base class for all siuo_task errors."""


class DataError(SiuoError):
    """The SIUO item files or images are missing, malformed or inconsistent."""


class JudgeConfigError(SiuoError):
    """The judge cannot be configured from the given settings."""


class JudgeEndpointError(SiuoError):
    """The judge endpoint cannot be reached, refused the request, or does not serve the model."""


class JudgeDeclineError(SiuoError):
    """The judge declines to grade too many requests for its scores to mean anything."""


class JudgeNoVerdictError(SiuoError):
    """Too many of the judge's replies hold no verdict (and are no refusal) to go on."""


class OutputError(SiuoError):
    """A command's output path is in the way (an existing file, a folder that cannot be made)."""


def raised_again(error: BaseException) -> BaseException:
    """``error`` to raise in one more caller: ours as a fresh copy, since an exception object
    raised again collects every caller's frames in its traceback (and a harness that formats
    each sample's traceback, Inspect, then spends seconds of CPU per sample). Other exceptions
    (whose constructors may take other arguments) as they are."""
    return copy.copy(error) if isinstance(error, SiuoError) else error
