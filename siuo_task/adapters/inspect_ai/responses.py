"""The model's reply as the SIUO scorers (and log readers) take it from an Inspect output.

Inspect's providers move a reply's closed ``<think>`` blocks, and a reasoning model's native
reasoning, out of the completion into reasoning content parts. siuo_task splits the trace from
the final answer itself (``siuo_task.benchmark.reasoning``, SIUO_REASONING_TAGS) and keeps both in the
record, and with SIUO_JUDGE_TRACES=1 judges the trace too, as in every other entry point; so the
visible reasoning is put back in front of the completion as ``<think>`` blocks. Redacted
reasoning (no visible text) is left out: it was never output. Nothing here imports Inspect.
"""

from __future__ import annotations

from typing import Any


def response_text(output: Any) -> str:
    """The reply behind an Inspect ``ModelOutput``: visible reasoning as ``<think>`` blocks,
    then the completion (the completion alone when there is no reasoning).

    Args:
        output: ``TaskState.output`` or ``EvalSample.output``.
    """
    completion = str(output.completion or "")
    message = output.choices[0].message if output.choices else None
    content = getattr(message, "content", None)
    if not isinstance(content, list):
        return completion
    traces = [
        part.reasoning
        for part in content
        if getattr(part, "type", None) == "reasoning" and not part.redacted and part.reasoning.strip()
    ]
    return "".join(f"<think>{trace}</think>" for trace in traces) + completion
