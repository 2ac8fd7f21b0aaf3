"""``siuo-eval judge`` and the judge half of ``siuo-eval check``: what the commands do, kept out of cli.py.

Exit codes of ``judge``: 0 every run complete; 1 some judge calls still failed (a rerun
retries only those); 2 an input failed validation (the others were judged) or nothing could
be judged.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from siuo_task.card import GEN_HEADLINE
from siuo_task.data import SiuoData
from siuo_task.errors import DataError
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine
from siuo_task.judge.probe import ProbeResult, probe
from siuo_task.judge.request import JudgeOutcome, JudgeRequest
from siuo_task.preflight import describe_probe
from siuo_task.rejudge import write_outputs
from siuo_task.runs import describe, find_responses
from siuo_task.runs.readers import Note, ResponsesFile, split_spec
from siuo_task.sweep import (
    BATCH_DISCOUNT,
    CostEstimate,
    LoadedRun,
    Progress,
    all_requests,
    estimate,
    judge_loaded,
    keep_earlier,
    leaderboard_rows,
    load_runs,
    run_summary,
    write_leaderboard,
)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_judge_arguments(judge: argparse.ArgumentParser) -> None:
    judge.add_argument(
        "inputs",
        nargs="+",
        help="files or folders, searched recursively: lmms-eval output folders or *_samples_siuo_gen*.jsonl, "
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
    """Judge every run found under ``args.inputs``. The judge settings and the inputs are checked
    before the SIUO data are loaded (which may mean a download), so those mistakes show at once."""
    config = JudgeConfig.from_env(require_key=not (args.dry_run or args.export_batch))
    single = len(args.inputs) == 1 and split_spec(args.inputs[0])[0] is None and Path(args.inputs[0]).is_file()
    finding = find_responses(args.inputs, skip=args.output)
    runs, problems = finding.runs, finding.notes
    _report_found(runs, problems)
    if not runs:
        raise DataError("no input could be judged (see the lines above); nothing was written")
    loaded, broken = load_runs(runs, load_data())
    problems += broken
    for problem in broken:
        say(f"siuo-eval: error: {problem.reason}")
    if not loaded:
        raise DataError("no input could be judged (see the lines above); nothing was written")
    engine = JudgeEngine(config)
    try:
        return _judge_with(engine, args, loaded, problems, single)
    finally:
        engine.close()


def _report_found(runs: list[ResponsesFile], problems: list[Note]) -> None:
    for problem in problems:
        say(describe(problem))
    for run in runs:
        say(f"run {run.name}: {run.path} ({run.kind}; named by {run.named_by})")


def _judge_with(
    engine: JudgeEngine, args: argparse.Namespace, loaded: list[LoadedRun], problems: list[Note], single: bool
) -> int:
    passes = getattr(args, "judge_passes", 1)
    requests = all_requests(loaded, passes)
    if args.import_batch:
        _import(engine, requests, args.import_batch)
    if args.dry_run:
        _print_estimates(estimate(loaded, engine, batch=args.batch == "openai", passes=passes), engine.config)
        return 0
    if args.export_batch:
        return _export(engine, requests, args.export_batch)
    pending = _first_pending(engine, requests)
    if pending is not None and not args.import_batch:
        result = probe(engine, pending)
        show_probe(result)
        engine.accept(pending, result.completion)  # the probe was a real judge call: use its answer
    if args.batch == "openai":
        _run_openai_batch(engine, requests, args.output)
    discount = BATCH_DISCOUNT if args.batch == "openai" else 1.0
    passes_values = _grade_with_progress(engine, loaded, discount, passes)
    values = passes_values[0]
    summaries = {
        run.run.name: run_summary(
            run, run_values, engine.config, args.batch, [later[index] for later in passes_values[1:]]
        )
        for index, (run, run_values) in enumerate(zip(loaded, values, strict=True))
    }
    _write(args.output, loaded, values, summaries, problems, single)
    return _exit_status(summaries, problems, engine.config)


def _first_pending(engine: JudgeEngine, requests: list[JudgeRequest]) -> JudgeRequest | None:
    return next((request for request in requests if not engine.is_known(engine.key(request))), None)


def show_probe(result: ProbeResult) -> None:
    for line in describe_probe(result):
        say(line)


def _import(engine: JudgeEngine, requests: list[JudgeRequest], path: Path) -> None:
    from siuo_task.judge.batch import import_batch

    summary = import_batch(engine, requests, path)
    say(
        f"read {path}: {summary.replies} reply(ies) used, {len(summary.failed)} failed line(s), "
        f"{summary.unknown} line(s) for requests not in these inputs"
    )
    engine.go_offline(summary.failed, f"no answer for this request in {path}: export the missing calls again")


def _export(engine: JudgeEngine, requests: list[JudgeRequest], path: Path) -> int:
    from siuo_task.judge.batch import export_batch

    if path.exists():
        keep_earlier(path, say)
    count = export_batch(engine, requests, path)
    say(
        f"wrote {count} request(s) to {path} (calls not already cached; identical requests once). Run them, e.g. "
        f"`vllm run-batch -i {path} -o judged.jsonl --model {engine.config.model}`, then judge the same inputs "
        "with --import-batch judged.jsonl"
    )
    return 0


def _run_openai_batch(engine: JudgeEngine, requests: list[JudgeRequest], output: Path) -> None:
    from siuo_task.judge.batch import OpenAIBatchRunner

    runner = OpenAIBatchRunner(engine, output / ".siuo-batch", say)
    try:
        failed = runner.run(requests)
    finally:
        runner.close()
    engine.go_offline(failed, "no answer from the OpenAI batch")


def _grade_with_progress(
    engine: JudgeEngine, loaded: list[LoadedRun], discount: float, passes: int = 1
) -> list[list[list[dict[str, Any]]]]:
    """Per pass (pass 1 first), per run, the per-item values. Passes run one after another, so
    pass 1 is judged exactly as a run without passes is."""
    from tqdm import tqdm

    progress = Progress(engine.config.model, discount, engine.config.endpoint)
    with tqdm(total=len(all_requests(loaded, passes)), desc="Judging", unit="call", file=sys.stderr) as bar:

        def on_done(outcome: JudgeOutcome) -> None:
            progress.add(outcome)
            cost = progress.cost_usd
            bar.set_postfix_str(f"cost ${cost:.4f}" if cost is not None else "cost n/a", refresh=False)
            bar.update(1)

        return [judge_loaded(loaded, engine, on_done, repeat) for repeat in range(passes)]


def _write(
    output: Path,
    loaded: list[LoadedRun],
    values: list[list[dict[str, Any]]],
    summaries: dict[str, dict[str, Any]],
    problems: list[Note],
    single: bool,
) -> None:
    written: list[Path] = []
    for run, run_values in zip(loaded, values, strict=True):
        folder = output if single else output / run.run.name
        for name in ("results.json", "samples.jsonl"):
            keep_earlier(folder / name, say)
        write_outputs(folder, summaries[run.run.name], run_values)
        written += [folder / "results.json", folder / "samples.jsonl"]
        _print_run(run.run.name, summaries[run.run.name])
    if not single:
        written += write_leaderboard(output, leaderboard_rows(summaries), problems, say)
    say("read: " + ", ".join(str(run.run.path) for run in loaded))
    say("wrote: " + ", ".join(str(path) for path in written))


def _print_run(name: str, summary: dict[str, Any]) -> None:
    parts = []
    for metric in GEN_HEADLINE:
        low, high = summary.get(f"{metric}_ci95") or [None, None]
        parts.append(f"{metric} {summary.get(metric)} (95% CI {low}-{high})")
    if summary.get("judge_passes", 1) > 1:
        flips = summary["flip_rate_responses"]
        print(
            f"{name}: {summary['judge_passes']} judge passes: safe_rate per pass {summary['safe_rate_passes']}; "
            f"verdicts that flipped: safety {summary['safety_flip_rate']}% of {flips['safety']['compared']}, "
            f"effectiveness {summary['effectiveness_flip_rate']}% of {flips['effectiveness']['compared']} "
            f"response(s) (left out for a judge error: {flips['safety']['left_out_judge_error']} and "
            f"{flips['effectiveness']['left_out_judge_error']}); the headline is pass 1"
        )
    usage = summary["usage"]
    cost = usage.get("cost_usd")
    judge = summary.get("judge_model") or summary.get("judge_model_requested")
    cost_text = f"{cost} USD" if cost is not None else f"unknown (no price for {judge})"
    print(f"{name}: " + ", ".join(parts))
    print(
        f"{name}: judge calls {usage.get('calls')}, cache hits {usage.get('cache_hits')}, coalesced "
        f"{usage.get('coalesced')}, judge errors {summary.get('judge_errors')} (declined {usage.get('declines')}), "
        f"estimated cost: {cost_text}"
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


def _exit_status(summaries: dict[str, dict[str, Any]], problems: list[Note], config: JudgeConfig) -> int:
    failures = [problem for problem in problems if problem.failure]
    # Errors in any pass count: a later pass's failed calls are retried by a rerun like pass 1's.
    errors = {
        name: sum(summary.get("judge_errors_passes") or [summary.get("judge_errors") or 0])
        for name, summary in summaries.items()
        if any(summary.get("judge_errors_passes") or [summary.get("judge_errors")])
    }
    if errors:
        declines = sum(summary["usage"].get("declines", 0) for summary in summaries.values())
        where = f"verdicts are cached in {config.cache_path}" if config.cache_path else "the cache is off"
        say(
            f"siuo-eval: {sum(errors.values())} judge call(s) failed or gave no verdict in run(s) "
            f"{', '.join(errors)} ({declines} declined by the judge; see 'error' in samples.jsonl); running the "
            f"same command again retries only those ({where})"
        )
    if failures:
        say(f"siuo-eval: {len(failures)} input(s) were not judged: " + "; ".join(f"'{p.path}'" for p in failures))
        return 2
    return 1 if errors else 0
