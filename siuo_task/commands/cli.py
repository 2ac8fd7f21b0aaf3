"""``siuo-eval``: small commands around the SIUO tasks."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from siuo_task.errors import SiuoError

if TYPE_CHECKING:
    from siuo_task.benchmark.data import SiuoData


TASK_FOLDERS = "siuo_task.task_folders"


def judge_choice_epilog() -> str:
    """How ``judge`` and ``check`` choose their judge, for their --help."""
    from siuo_task.judge.config import DEFAULT_JUDGE_MODEL

    return (
        "how the judge is chosen (environment variables):\n"
        "  SIUO_JUDGE_PANEL=FILE  a panel of judges (a YAML file listing them), else one judge:\n"
        f"  SIUO_JUDGE_MODEL       the judge model (default {DEFAULT_JUDGE_MODEL})\n"
        "  SIUO_JUDGE_BASE_URL    an OpenAI-compatible endpoint such as http://127.0.0.1:8000/v1\n"
        "                         (else OPENAI_BASE_URL; default OpenAI's API)\n"
        "  SIUO_JUDGE_API_KEY     the judge's key (else OPENAI_API_KEY)\n"
        "every setting (cache, concurrency, rate limits, panels): docs/judge.md in siuo-task's repository"
    )


def _task_folders() -> dict[str, Any]:
    """The harnesses whose task files live in a folder (``--include_path``), by entry-point name."""
    from importlib.metadata import entry_points

    return {entry.name: entry for entry in entry_points(group=TASK_FOLDERS)}


def _include_path(args: argparse.Namespace) -> int:
    print(_task_folders()[args.harness].load()())
    return 0


def _check(args: argparse.Namespace) -> int:
    from siuo_task.commands.judge_command import show_probe
    from siuo_task.harness.preflight import check_judge
    from siuo_task.judge.engines import judges_of

    data = args.settings.data(args.data_dir)
    print(f"data: {len(data.gen)} open-ended and {len(data.mcq)} multiple-choice items under {data.root}")
    if not args.skip_judge:
        for config in judges_of(args.settings.judge()):  # every judge of a panel (SIUO_JUDGE_PANEL)
            print(f"judge: {config.model} at {config.endpoint}: sending one judge call with an image ...", flush=True)
            show_probe(check_judge(config, data))
    return 0


def _judge(args: argparse.Namespace) -> int:
    from siuo_task.runs.outputs import check_output_file, check_output_folder

    check_output_folder(args.output)
    if args.export_batch:
        check_output_file(args.export_batch, "--export-batch")
    from siuo_task.commands.judge_command import run_judge

    return run_judge(args, lambda: args.settings.data(args.data_dir))


def _optional_data(args: argparse.Namespace) -> SiuoData | None:
    """The SIUO items for question text and images; reports still build without them."""
    try:
        return args.settings.data(args.data_dir)
    except SiuoError as exc:
        print(f"siuo-eval: warning: item texts and images left out ({exc})", file=sys.stderr)
        return None


def _report(args: argparse.Namespace) -> int:
    from siuo_task.report.build import report_warnings, write_report
    from siuo_task.report.calibrated import calibrations, find_reviews
    from siuo_task.report.view import label
    from siuo_task.runs import describe, find_results
    from siuo_task.runs.outputs import check_output_folder

    check_output_folder(args.output)
    references = None
    if args.references_audit is not None:
        from siuo_task.report.references import read_reference_audit

        references = read_reference_audit(args.references_audit)
    finding = find_results(args.results)
    runs = finding.runs
    for note in finding.notes:
        if not note.quiet:
            print(describe(note), file=sys.stderr)
    for run in runs:
        print(f"read {label(run)} ({run.harness}, model {run.model}): {', '.join(map(str, run.files_read()))}")
    for warning in report_warnings(runs):
        print(f"siuo-eval: warning: {warning}", file=sys.stderr)
    if references is not None:
        print(f"read {references.path} (reference answers graded unsafe: {len(references.unsafe)})")
    reviews = find_reviews(runs, args.review)
    for name, review in reviews.items():
        print(f"read review of {name}: {review}")
    calibrated = calibrations(runs, reviews)
    for path in write_report(runs, args.output, _optional_data(args), calibrated, references):
        print(f"wrote {path}")
    return 0


def _export_review(args: argparse.Namespace) -> int:
    from siuo_task.commands.review import export_review, refuse_to_overwrite
    from siuo_task.runs import load_one_run
    from siuo_task.runs.outputs import check_output_file

    check_output_file(args.output)
    if not args.force:
        refuse_to_overwrite(args.output)
    run = load_one_run(args.results)
    print(f"read {run.name} ({run.harness}, model {run.model}): {', '.join(map(str, run.files_read()))}")
    data = _optional_data(args)
    items = {item.question_id: item for item in data.gen} if data else {}
    rows = export_review(run, items, args.output, args.seed)
    print(
        f"wrote {rows} response(s) to {args.output} in a category-stratified order (seed {args.seed}): fill "
        "human_safe and human_effective (true/false) from the top; the first N rows spread over every category"
    )
    return 0


def _agreement(args: argparse.Namespace) -> int:
    """One positional argument: a filled review CSV (judge against human); two: two judged runs
    (judge against judge)."""
    from siuo_task.runs.outputs import check_output_file

    if args.output:
        check_output_file(args.output)
    if len(args.inputs) == 1:
        return _review_agreement(Path(args.inputs[0]), args.output, args.target_width)
    if len(args.inputs) == 2:
        return _judge_agreement(args.inputs[0], args.inputs[1], args.output)
    raise SiuoError(
        f"agreement takes one review CSV (judge against human) or two judged runs RUN_A RUN_B (judge against "
        f"judge); got {len(args.inputs)} arguments"
    )


def _review_agreement(review: Path, output: Path | None, target_width: float) -> int:
    import json

    from siuo_task.commands.review import agreement, calibrated, calibrated_lines, first_gap, read_review

    if not 0 < target_width <= 100:
        raise SiuoError(f"--target-width must be in (0, 100] percentage points, got {target_width:g}")
    rows = read_review(review)
    result = agreement(rows)
    print(f"read {review}")
    for label, parts in result.items():
        overall = parts["overall"]
        print(
            f"{label}: n={overall['n']} accuracy={overall['accuracy']} kappa={overall['kappa']} "
            f"95% CI={overall['kappa_ci95']} confusion={overall['confusion']} "
            f"(unlabelled {overall['skipped_unlabelled']}, judge errors {overall['skipped_judge_error']})"
        )
        for category, stats in parts["per_category"].items():
            print(
                f"  {category}: labelled {stats['n'] + stats['skipped_judge_error']} of {stats['rows']} row(s), "
                f"n={stats['n']} accuracy={stats['accuracy']} kappa={stats['kappa']}"
            )
    result["calibrated"] = calibrated(rows, target_width)
    gap = first_gap(rows)
    numbered = all(row.review_row is not None for row in rows)
    result["labelled_from_top"] = gap is None if numbered else None
    if gap:
        print(
            f"siuo-eval: warning: '{review}': row {gap[0]} is blank and row {gap[1]} labelled, so the labels are not "
            "the first rows of export-review's order; the calibrated intervals assume the labelled items are a "
            "random draw within each category (label from the top)",
            file=sys.stderr,
        )
    for line in calibrated_lines(result["calibrated"]):
        print(line)
    if output:
        output.write_text(json.dumps(result, indent=2), encoding="utf-8")
        print(f"wrote {output}")
    return 0


def _judge_agreement(spec_a: str, spec_b: str, output: Path | None) -> int:
    import json

    from siuo_task.commands.agreement import compare_judgings, summary_lines
    from siuo_task.runs import load_one_run

    runs = [load_one_run(spec_a), load_one_run(spec_b)]
    for letter, run in zip("AB", runs, strict=True):
        print(f"read {letter}: {run.name} ({run.harness}): {', '.join(map(str, run.files_read()))}")
    result = compare_judgings(*runs)
    for line in summary_lines(result):
        print(line)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"wrote {output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from siuo_task import __version__

    parser = argparse.ArgumentParser(
        prog="siuo-eval",
        description="Commands around the SIUO tasks: judge existing responses, report, check a setup, review.",
    )
    parser.add_argument("--version", action="version", version=f"siuo-eval {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    include = commands.add_parser("include-path", help="print the task folder for a harness's --include_path")
    include.add_argument(
        "--harness", choices=sorted(_task_folders()), default="lmms-eval", help="which harness (default: lmms-eval)"
    )
    include.set_defaults(run=_include_path)
    check = commands.add_parser(
        "check",
        help="validate the data and send one real judge call before a long run",
        description="Validate the SIUO data and send one real judge call (with an image) to every judge.",
        epilog=judge_choice_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("--data-dir", default=None, help="SIUO data folder (default: $SIUO_DATA_DIR, else the hub)")
    check.add_argument("--skip-judge", action="store_true", help="check the data only")
    check.set_defaults(run=_check)
    judge = commands.add_parser(
        "judge",
        help="judge existing responses without generating, one run or a whole sweep: lmms-eval and lm-eval "
        "samples, Inspect logs, VLMEvalKit predictions, the authors' format",
        description="Judge existing responses without generating, one run or a whole sweep.",
        epilog=judge_choice_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from siuo_task.commands.judge_command import add_judge_arguments

    add_judge_arguments(judge)
    judge.set_defaults(run=_judge)
    data_help = "SIUO data folder for item texts and images (default: $SIUO_DATA_DIR, else the hub)"
    report = commands.add_parser("report", help="report.md, report.html and figures for one or more runs")
    report.add_argument(
        "results",
        nargs="+",
        help="results files or folders (every run found in a folder is reported, each named); NAME=FILE names one",
    )
    report.add_argument(
        "--output", type=Path, required=True, help="folder for report.md, report.html and figures (created if missing)"
    )
    report.add_argument("--data-dir", default=None, help=data_help)
    report.add_argument(
        "--references-audit",
        type=Path,
        default=None,
        metavar="AUDIT_JSON",
        help="audit.json of `siuo-eval audit --references`: adds a sensitivity line, the open-ended rates "
        "without the items whose reference answer the judge grades unsafe (the headline is unchanged)",
    )
    report.add_argument(
        "--review",
        type=Path,
        action="append",
        default=[],
        help="a filled export-review CSV of one of the runs (repeat for several): adds its human-calibrated rates; "
        "a review.csv beside a run is used without this",
    )
    report.set_defaults(run=_report)
    export = commands.add_parser("export-review", help="a CSV of judged responses with blank human-label columns")
    export.add_argument("results", help="one run: a results file, or a folder holding exactly one run")
    export.add_argument("--output", type=Path, required=True, help="the CSV to write (labels kept: see --force)")
    export.add_argument("--force", action="store_true", help="overwrite a review file even if it holds labels")
    export.add_argument("--seed", type=int, default=0, help="seed of the row order (default 0)")
    export.add_argument("--data-dir", default=None, help=data_help)
    export.set_defaults(run=_export_review)
    agree = commands.add_parser(
        "agreement",
        help="judge-human agreement from a filled review CSV, or judge-judge agreement of two judged runs",
        usage="siuo-eval agreement REVIEW_CSV [--output FILE] [--target-width POINTS]\n"
        "       siuo-eval agreement RUN_A RUN_B [--output FILE]",
        description="One argument, REVIEW_CSV: the judge against the human labels of a filled export-review CSV. "
        "Two arguments, RUN_A RUN_B: two judgings of the same responses (siuo-eval judge outputs, or any "
        "harness's judged runs), matched by item and response text. Both give percent agreement, Cohen's kappa "
        "with its 95% interval and the confusion matrix for safety and effectiveness, overall and per category. "
        "A review CSV also gives the human-calibrated rates (the judge's item-level rates corrected by the "
        "labelled items, with 95% intervals; docs/metrics.md) and how many labels a chosen interval width needs.",
    )
    agree.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="REVIEW_CSV: a filled review CSV; or RUN_A RUN_B: two judged runs (each a results file or a folder "
        "holding one run; NAME=PATH names one)",
    )
    agree.add_argument(
        "--output", type=Path, default=None, help="also write the numbers as JSON (two runs: with the disagreements)"
    )
    agree.add_argument(
        "--target-width",
        type=float,
        default=10.0,
        help="REVIEW_CSV only: say how many labelled items would bring the calibrated rates' 95%% interval to this "
        "full width, in percentage points (default 10, i.e. +-5)",
    )
    agree.set_defaults(run=_agreement)
    from siuo_task.construction.commands import add_commands

    add_commands(commands)
    return parser


# Commands a rerun resumes: judging skips every verdict already in the judge cache.
_RESUMABLE = frozenset({"judge"})


def main(argv: list[str] | None = None) -> int:
    from siuo_task.judge.interrupts import as_interrupted, stop_on_signals
    from siuo_task.judge.outage import OutageError
    from siuo_task.settings import Settings

    args = build_parser().parse_args(argv)
    args.settings = Settings.from_env()  # read once, here; every command takes its settings from it
    again = "siuo-eval " + shlex.join(sys.argv[1:] if argv is None else argv)
    args.resume_command = again  # what a command that kept part of its work names to finish it
    try:
        with stop_on_signals():
            return int(args.run(args))
    except SiuoError as exc:
        from siuo_task.harness.run_end import error_text

        text = error_text(exc)
        if isinstance(exc, OutageError) and args.command in _RESUMABLE:
            text += f". When the judge is back, resume with: {again}"
        print(f"siuo-eval: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        from siuo_task.harness.run_end import exit_now

        interrupted = as_interrupted(exc)
        resume = f"; to resume, run: {again}" if args.command in _RESUMABLE else ""
        print(f"siuo-eval: interrupted: {interrupted}{resume}", file=sys.stderr, flush=True)
        if argv is None:  # the command itself, not a caller in-process: threads left in calls are not waited for
            exit_now(interrupted.status)
        return interrupted.status


if __name__ == "__main__":
    sys.exit(main())
