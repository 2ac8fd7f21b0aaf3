"""``siuo-eval judge`` and the judge half of ``siuo-eval check``: the arguments, and what the
terminal shows. The judging is ``siuo_task.commands.judge_pipeline``'s.

Exit codes of ``judge``: 0 no judge call failed; 1 some judge calls still failed (a rerun
retries only those), or a judge of a panel stopped during the run (the results are written and
the last line names the command that resumes, asking only that judge); 2 an input failed
validation (the others were judged) or nothing could be judged.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from siuo_task.benchmark.card import GEN_HEADLINE
from siuo_task.benchmark.data import SiuoData
from siuo_task.benchmark.summary import JudgeResults, not_sampled_warning
from siuo_task.commands.judge_pipeline import CostEstimate, Judged, JudgeJob, Pricing, Progress, judge_sweep
from siuo_task.errors import JudgeDeclineError, JudgeNoVerdictError
from siuo_task.harness.preflight import describe_probe
from siuo_task.judge.bar_status import BarStatus
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import CallTally
from siuo_task.judge.pricing import unknown_cost
from siuo_task.judge.probe import ProbeResult
from siuo_task.judge.request import JudgeOutcome
from siuo_task.runs import Note, describe
from siuo_task.runs.readers import ResponsesFile


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_judge_arguments(judge: argparse.ArgumentParser) -> None:
    judge.add_argument(
        "inputs",
        nargs="+",
        help="files or folders, searched recursively: lmms-eval output folders or <stamp>_samples_siuo_gen*.jsonl, "
        "lm-eval output folders or samples_siuo_gen*_<time>.jsonl, Inspect logs (.eval / .json) of siuo_gen*, "
        "VLMEvalKit work folders or <model>_<dataset>.xlsx/.tsv, the authors' .json; NAME=PATH names a run",
    )
    judge.add_argument(
        "--output",
        type=Path,
        required=True,
        help="folder for <run>/results.json, <run>/samples.jsonl and leaderboard.csv/.json "
        "(one input file: results.json and samples.jsonl directly in it)",
    )
    judge.add_argument("--data-dir", default=None, help="SIUO data folder (default: $SIUO_DATA_DIR, else the hub)")
    judge.add_argument(
        "--dry-run", action="store_true", help="print the calls, tokens and cost still needed; make no call"
    )
    judge.add_argument(
        "--judge-passes",
        type=_passes,
        default=1,
        metavar="K",
        help="ask the judge K times per request (default 1) to measure its stability: results.json adds each "
        "pass's Safe rate and the share of verdicts that flipped; the headline stays pass 1",
    )
    mode = judge.add_mutually_exclusive_group()
    mode.add_argument("--batch", choices=["openai"], help="judge through the OpenAI Batch API (half price, slower)")
    mode.add_argument(
        "--export-batch", type=Path, metavar="FILE", help="write the calls still needed as batch JSONL and stop"
    )
    mode.add_argument(
        "--import-batch", type=Path, metavar="FILE", help="judge from a batch output JSONL (vllm run-batch, OpenAI)"
    )


def _passes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of passes, 1 or more; got {text!r}")
    return value


def run_judge(args: argparse.Namespace, load_data: Callable[[], SiuoData]) -> int:
    """Judge every run found under ``args.inputs`` (``siuo_task.commands.judge_pipeline``), showing each
    step; the exit status follows from what was judged."""
    job = JudgeJob(
        inputs=list(args.inputs),
        output=args.output,
        settings=args.settings,
        passes=getattr(args, "judge_passes", 1),
        batch=args.batch,
        dry_run=args.dry_run,
        export_batch=args.export_batch,
        import_batch=args.import_batch,
    )
    judged = judge_sweep(job, load_data, Terminal())
    if args.dry_run or args.export_batch:
        return 0
    resume = getattr(args, "resume_command", None) or "siuo-eval " + shlex.join(sys.argv[1:])
    return _exit_status(judged, resume)


class Terminal:
    """What ``siuo-eval judge`` shows: runs and notes, the probe and progress on stderr, each
    run's numbers and the dry-run bill on stdout."""

    def say(self, text: str) -> None:
        say(text)

    def found(self, runs: list[ResponsesFile], notes: list[Note]) -> None:
        for note in notes:
            say(describe(note))
        for run in runs:
            say(f"run {run.name}: {run.path} ({run.kind}; named by {run.named_by})")

    def imported(self, path: Path, replies: int, failed: int, unknown: int) -> None:
        say(
            f"read {path}: {replies} reply(ies) used, {failed} failed line(s), "
            f"{unknown} line(s) for requests not in these inputs"
        )

    def estimates(self, rows: list[CostEstimate], config: JudgeConfig) -> None:
        _print_estimates(rows, config)

    def exported(self, path: Path, count: int, config: JudgeConfig) -> None:
        say(
            f"wrote {count} request(s) to {path} (calls not already cached; identical requests once). Run them, "
            f"e.g. `vllm run-batch -i {path} -o judged.jsonl --model {config.model}`, then judge the same inputs "
            "with --import-batch judged.jsonl"
        )

    def probed(self, result: ProbeResult) -> None:
        show_probe(result)

    @contextmanager
    def progress(
        self, total: int, pricing: Pricing, status: Callable[[], str | None] | None = None
    ) -> Iterator[Callable[[JudgeOutcome], None]]:
        from tqdm import tqdm

        progress = Progress(pricing)
        # The bar counts judge requests answered; the calls sent for them are fewer where answers
        # came from the cache or from an identical request in flight (coalesced). ``status`` adds
        # what holds the calls back (the provider's rate limit), even while no call ends.
        with tqdm(total=total, desc="Judging", unit="request", file=sys.stderr) as bar, BarStatus(bar, status) as shown:

            def on_done(outcome: JudgeOutcome) -> None:
                progress.add(outcome)
                cost = progress.cost_usd
                cost_text = f"cost ${cost:.4f}" if cost is not None else "cost n/a"
                totals = progress.totals
                calls = f"calls {totals.calls}, cached {totals.cache_hits}, coalesced {totals.coalesced}"
                shown.set(f"{calls}, {cost_text}")
                bar.update(1)

            yield on_done

    def judged(self, name: str, summary: JudgeResults) -> None:
        _print_run(name, summary)


def show_probe(result: ProbeResult) -> None:
    for line in describe_probe(result):
        say(line)


def _print_run(name: str, summary: JudgeResults) -> None:
    metrics, passes = summary.metrics, summary.passes
    parts = []
    for metric in GEN_HEADLINE:
        low, high = summary.ci95(metric)
        decided = metrics.get(f"{metric}_items")
        basis = f" on {decided} of {summary.n_items} items" if decided is not None else ""
        parts.append(f"{metric} {summary.rate(metric)} (95% CI {low}-{high}){basis}")
    if summary.judge_passes > 1:
        flips = passes["flip_rate_responses"]
        print(
            f"{name}: {summary.judge_passes} judge passes: safe_rate per pass {passes['safe_rate_passes']}; "
            f"verdicts that flipped: safety {passes['safety_flip_rate']}% of {flips['safety']['compared']}, "
            f"effectiveness {passes['effectiveness_flip_rate']}% of {flips['effectiveness']['compared']} "
            f"response(s) (left out for a judge error: {flips['safety']['left_out_judge_error']} and "
            f"{flips['effectiveness']['left_out_judge_error']}); the headline is pass 1"
        )
    usage = summary.usage
    cost = usage.get("cost_usd")
    judge = metrics.get("judge_model") or metrics.get("judge_model_requested")
    if cost is not None:
        cost_text = f"{cost} USD"
    elif summary.panel:
        cost_text = "unknown (a judge's price is unknown: see each judge's line)"
    else:
        cost_text = unknown_cost(str(judge or "unknown"), _one_endpoint(summary))
    print(f"{name}: " + ", ".join(parts))
    if warning := not_sampled_warning(name, metrics):
        print(f"siuo-eval: warning: {warning}", file=sys.stderr)
    print(
        f"{name}: judge calls {usage.get('calls')}, cache hits {usage.get('cache_hits')}, coalesced "
        f"{usage.get('coalesced')}, judge errors {metrics.get('judge_errors')} (declined {usage.get('declines')}), "
        f"estimated cost: {cost_text}"
    )
    if panel := summary.panel:
        _print_panel(name, panel)


def _one_endpoint(summary: JudgeResults) -> str | None:
    """The judge's endpoint when the run had one (a panel's are each judge's own)."""
    endpoint = summary.metrics.get("judge_endpoint")
    return endpoint if isinstance(endpoint, str) and endpoint and not {",", ";"} & set(endpoint) else None


def _print_panel(name: str, panel: dict[str, Any]) -> None:
    """Each judge of a panel alone, and each pair's agreement (results.json's judge_panel)."""
    undecided = panel["undecided_votes"]
    print(
        f"{name}: panel of {len(panel['judges'])} judges; undecided votes: safety {undecided['safety']}, "
        f"effectiveness {undecided['effectiveness']}"
    )
    for judge in panel["judges"]:
        rates = ", ".join(f"{metric} {judge.get(metric)}" for metric in GEN_HEADLINE)
        cost = judge["cost_usd"]
        shown = f"{cost} USD" if cost is not None else unknown_cost(judge["model"], judge["endpoint"])
        print(f"{name}:   {judge['judge']}: {rates}; judge errors {judge['judge_errors']}, cost {shown}")
    for pair in panel["agreement"]:
        print(
            f"{name}:   kappa {pair['a']} vs {pair['b']}: safety {pair['safety']['kappa']}, "
            f"effectiveness {pair['effectiveness']['kappa']}"
        )


def _print_estimates(estimates: list[CostEstimate], config: JudgeConfig) -> None:
    print(f"dry run: judge {config.model} at {config.endpoint}; no call made")
    print(
        f"{'run':<32} {'requests':>8} {'coalesced':>9} {'cached':>7} {'calls':>6} "
        f"{'in tokens':>10} {'out tokens':>10} {'cost USD':>9}"
    )
    for row in estimates:
        print(_estimate_line(row.name, row))
    costs = [row.cost_usd for row in estimates]
    total = CostEstimate(
        name="TOTAL",
        requests=sum(row.requests for row in estimates),
        coalesced=sum(row.coalesced for row in estimates),
        cached=sum(row.cached for row in estimates),
        calls=sum(row.calls for row in estimates),
        input_tokens=sum(row.input_tokens for row in estimates),
        output_tokens=sum(row.output_tokens for row in estimates),
        cost_usd=None if None in costs else round(sum(cost or 0.0 for cost in costs), 4),
    )
    print(_estimate_line("TOTAL", total))
    print(
        "tokens are estimates (text: 1 token per 4 characters; images: OpenAI's high-detail tile count; "
        "completions: 150 tokens each); cost uses configs/judge_prices.json (n/a: model not in the table)"
    )


def _estimate_line(name: str, row: CostEstimate) -> str:
    cost = "n/a" if row.cost_usd is None else f"{row.cost_usd:.4f}"
    return (
        f"{name:<32} {row.requests:>8} {row.coalesced:>9} {row.cached:>7} {row.calls:>6} "
        f"{row.input_tokens:>10} {row.output_tokens:>10} {cost:>9}"
    )


def rerun_hint(tally: CallTally, cache: Path | None) -> str:
    """What running the same command again would do, only where it can help: calls that got no
    reply are retried (with the cache on, only those); replies without a verdict would be
    bought again from the same judge."""
    hints = []
    if tally.without_reply:
        if cache:
            hints.append(
                f"running the same command again retries only those ({tally.without_reply} got no reply; "
                f"verdicts are cached in {cache})"
            )
        else:
            hints.append(
                f"{tally.without_reply} got no reply; the cache is off, so running the command again repeats "
                "every call, not only those"
            )
    if tally.without_verdict:
        hints.append(
            f"{tally.without_verdict} reply(ies) held no verdict: asking the same judge again would buy the "
            "same replies, so a rerun does not help them; judge with another model (SIUO_JUDGE_MODEL)"
        )
    return "; ".join(hints) or "see the errors above"


def _exit_status(judged: Judged, resume: str) -> int:
    summaries, failures = judged.summaries, judged.failures
    # Errors in any pass count: a later pass's failed calls are retried by a rerun like pass 1's.
    errors = {name: sum(summary.errors_per_pass) for name, summary in summaries.items() if any(summary.errors_per_pass)}
    if errors:
        declines = sum(summary.usage.get("declines", 0) for summary in summaries.values())
        say(
            f"siuo-eval: {sum(errors.values())} judge call(s) failed or gave no verdict in run(s) "
            f"{', '.join(errors)} ({declines} declined by the judge; see 'error' in samples.jsonl); "
            + (rerun_hint(judged.tally, judged.cache) if not judged.stopped else "see the line below")
        )
    if failures:
        say(f"siuo-eval: {len(failures)} input(s) were not judged: " + "; ".join(f"'{p.path}'" for p in failures))
        return 2
    if judged.stopped:
        say(stopped_line(judged, resume))
        return 1
    return 1 if errors else 0


def stopped_line(judged: Judged, resume: str) -> str:
    """The last words after a panel's judge stopped: which, why, what was kept, and the command
    that resumes (it asks only what is missing: with the cache on, the stopped judge alone)."""
    cache = judged.cache
    named = "; ".join(f"{label} ({cause})" for label, cause in judged.stopped.items())
    unanswered = sum(
        judge.get("unanswered_stopped", 0)
        for summary in judged.summaries.values()
        for judge in (summary.panel or {}).get("judges", [])
    )
    undecided = sum(summary.judge_errors for summary in judged.summaries.values())
    kept = (
        f"every verdict of the other judges is kept in the results and in the cache {cache}"
        if cache
        else "every verdict of the other judges is in the results, but the cache is off, so a rerun asks every "
        "judge again"
    )
    if any(isinstance(stop, (JudgeDeclineError, JudgeNoVerdictError)) for stop in judged.stopped.values()):
        fix = "replace that judge in the panel file (asking it again would buy the same replies), then resume with"
    else:
        fix = "once it works again, resume with (it asks only that judge)" if cache else "resume with"
    return (
        f"siuo-eval: a judge of the panel stopped during the run: {named}. {unanswered} of its requests were not "
        f"answered; {kept}; {undecided} vote(s) without a majority of the judges left are judge errors; the "
        f"results are written. To finish, {fix}: {resume}"
    )
