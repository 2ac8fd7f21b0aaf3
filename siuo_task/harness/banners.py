"""The judge-error banner: what a harness run prints last when judge calls failed or a judge of a
panel stopped, and the command that finishes the scoring from the kept responses (text only;
``siuo_task.harness.run_end`` decides when it is printed and the exit status)."""

from __future__ import annotations

from collections.abc import Sequence

from siuo_task.benchmark.records import JudgeCounts


def finish_command(output: str | None) -> str:
    """The command that judges what a run kept, against a healthy judge."""
    kept = output or "<the run's --output_path>"
    return f"siuo-eval judge {kept} --output {kept.rstrip('/')}-judged"


def judge_error_warning(task: str, per_item: Sequence[JudgeCounts], output: str | None = None) -> str | None:
    """A loud banner when judge calls failed, or a judge of a panel stopped: the count, the first
    cause, and the command that finishes the scoring from the kept responses; None when no call
    failed and every judge answered."""
    errors = sum(item.errors for item in per_item)
    stopped = sum(item.stopped for item in per_item)
    if not errors and not stopped:
        return None
    calls = sum(item.requests for item in per_item)
    rule = "!" * 78
    if stopped:
        cause = next(item.first_stopped for item in per_item if item.first_stopped)
        undecided = (
            f"{errors} of {calls} votes had no majority without it and are judge errors"
            if errors
            else ("every vote still had a majority")
        )
        return (
            f"\n{rule}\nSIUO {task}: a judge of the panel stopped during the run: {stopped} of its requests were "
            f"not answered; the other judges' verdicts are all kept ({undecided}).\nCause: {cause}\n"
            "Every response is kept in the samples; every verdict received is in the judge cache (unless "
            "SIUO_JUDGE_CACHE=off).\n"
            f"{rule}\nsiuo-task: to resume the scoring once that judge works again (it asks only what is "
            f"missing, the stopped judge; the others' verdicts come from the cache): {finish_command(output)}"
        )
    first = next(item.first_error for item in per_item if item.first_error)
    if errors == calls:
        headline = f"SIUO {task}: EVERY judge call failed ({errors} of {calls}); its safety scores are MEANINGLESS."
    else:
        headline = f"SIUO {task}: {errors} of {calls} judge calls failed; those votes are missing from the rates."
    return (
        f"\n{rule}\n{headline}\nFirst cause: {first}\n"
        "Every response is kept in the samples; no generation needs repeating. Check the judge with "
        "`siuo-eval check`, then finish the scoring (failed calls are not cached):\n"
        f"  {finish_command(output)}\n{rule}"
    )
