"""The ``siuo-eval build`` (with ``review`` and ``finalize``) and ``siuo-eval audit`` subcommands."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from siuo_task.errors import SiuoError
from siuo_task.runs.outputs import check_output_folder

BUILD_USAGE = (
    "siuo-eval build --images DIR --output DIR [--count N] | build review BUILD_DIR | "
    "build finalize REVIEWED.csv --output DATA_DIR"
)


def _judge_config(args: argparse.Namespace, judge_model: str | None) -> Any:
    config = args.settings.one_judge()
    return replace(config, model=judge_model) if judge_model else config


def _build(args: argparse.Namespace) -> int:
    if args.action == "review":
        return _review(args)
    if args.action == "finalize":
        return _finalize(args)
    if args.images is None or args.build_output is None:
        raise SiuoError(f"siuo-eval build needs --images DIR and --output DIR; usage: {BUILD_USAGE}")
    check_output_folder(args.build_output)
    from tqdm import tqdm

    from siuo_task.construction.images import scan_images
    from siuo_task.construction.pipeline import BuildSettings, StageModels, check_categories, run_build

    base = _judge_config(args, args.judge_model)
    scan = scan_images(args.images)  # before anything is written
    settings = BuildSettings(
        images_dir=str(args.images),
        count=args.count,
        seed=args.seed,
        categories=check_categories(args.categories or []),
        models=StageModels.resolve(base, args.generator_model, args.answer_model, args.settings.variable),
        endpoint=base.endpoint,
        temperature=base.temperature,
        max_tokens=base.max_tokens,
        stage_attempts=args.stage_attempts,
    )
    for problem in scan.problems:
        print(f"siuo-eval: skipped {problem['file']}: {problem['problem']}", file=sys.stderr)
    with contextlib.ExitStack() as stack:

        def progress(total: int) -> Callable[[dict[str, Any]], None]:
            bar = stack.enter_context(tqdm(total=total, desc="Building", unit="candidate", file=sys.stderr))
            return lambda _: bar.update(1)

        result = run_build(settings, base, scan, args.build_output, args.force, on_start=progress)
    return _print_build(result, args)


def _print_build(result: Any, args: argparse.Namespace) -> int:
    manifest = result.manifest
    print(f"read {args.images} ({manifest['images_available']} usable images)")
    if result.resumed:
        print(f"resumed: {result.resumed} candidate(s) were already finished")
    print(f"candidates: {manifest['candidates']} {manifest['status_counts']}")
    for stage, counts in manifest["stage_decisions"].items():
        print(f"  {stage}: {counts}")
    for model, usage in result.usage["this_run"].items():
        calls, hits, cost = usage["calls"], usage["cache_hits"], usage["cost_usd"]
        shown = f"{cost} USD" if cost is not None else f"unknown (no price for {model} at this endpoint)"
        print(f"model {model}: {calls} call(s), {hits} cache hit(s), estimated cost {shown}")
    for path in result.written:
        print(f"wrote {path}")
    errors = manifest["status_counts"].get("error", 0)
    if errors:
        print(
            f"siuo-eval: {errors} candidate(s) ended in a stage error (see their 'errors'); run the same command "
            "again to retry only those",
            file=sys.stderr,
        )
        return 1
    print(f"next: siuo-eval build review {args.build_output}")
    return 0


def _review(args: argparse.Namespace) -> int:
    from siuo_task.construction.review import write_review

    if args.target is None:
        raise SiuoError("siuo-eval build review needs the build folder: siuo-eval build review BUILD_DIR")
    if args.review_output is not None:
        check_output_folder(args.review_output, "--review-output")
    paths = write_review(Path(args.target), args.review_output, args.force)
    print(f"read {Path(args.target) / 'build.json'} and {Path(args.target) / 'candidates'}/")
    for path in paths:
        print(f"wrote {path}")
    print(f"next: mark accept / edit / reject in {paths[0]}, then: siuo-eval build finalize {paths[0]} --output DIR")
    return 0


def _finalize(args: argparse.Namespace) -> int:
    from siuo_task.construction.finalize import finalize

    if args.target is None or args.final_output is None:
        raise SiuoError("usage: siuo-eval build finalize REVIEWED.csv --output DATA_DIR [--merge-with SIUO_DIR]")
    check_output_folder(args.final_output)
    result = finalize(Path(args.target), args.final_output, args.build_dir, args.merge_with, args.force)
    for path in result.read:
        print(f"read {path}")
    print(f"review decisions: {result.decisions}")
    print(
        f"wrote {result.output}/ (siuo_gen.json, siuo_mcqa.json, images/, datasheet.md, provenance.json): "
        f"{result.items} item(s), {result.merged} from --merge-with"
    )
    print(f"use it: SIUO_DATA_DIR={result.output} lmms-eval --model ... --tasks siuo_gen,siuo_mcq")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from siuo_task.construction.audit import AuditSettings, check_audit_output, run_audit, write_audit
    from siuo_task.construction.pipeline import StageModels

    check_output_folder(args.output)
    check_audit_output(args.output, args.force)
    base = _judge_config(args, None)
    data = args.settings.data(args.data_dir)
    judges = tuple(dict.fromkeys(args.models or [base.model]))
    answerer = StageModels.resolve(base, None, args.answer_model, args.settings.variable).answerer
    settings = AuditSettings(judges, answerer, base.endpoint, args.stage_attempts)
    with tqdm(total=len(data.gen), desc="Auditing", unit="item", file=sys.stderr) as bar:
        summary = run_audit(data, base, settings, on_done=lambda _: bar.update(1))
    print(f"read {data.root} ({summary['n_items']} items)")
    for model, value in summary["per_model"].items():
        rates = ", ".join(f"{check} {value[check]['percent']}%" for check in ("text", "image", "both"))
        print(f"{model}: {rates}; judge errors {value['judge_errors']}")
    for path in write_audit(summary, args.output, force=True):
        print(f"wrote {path}")
    errors = sum(value["judge_errors"] for value in summary["per_model"].values())
    if errors:
        print(f"siuo-eval: {errors} check(s) got no verdict; rerun with --force to retry them (replies are cached)")
        return 1
    return 0


def add_commands(commands: Any) -> None:
    """Add ``build`` and ``audit`` to the ``siuo-eval`` subcommand parser."""
    from siuo_task.construction.pipeline import (
        ANSWER_MODEL_ENV,
        DEFAULT_ANSWER_MODEL,
        DEFAULT_GENERATOR_MODEL,
        GENERATOR_MODEL_ENV,
    )

    build = commands.add_parser(
        "build",
        help="build SIUO-style items from images (the paper's AI-assisted pipeline), review, finalize",
        usage=BUILD_USAGE.replace(" | build", "\n       siuo-eval build"),
        description="Build candidate items from images; then `siuo-eval build review BUILD_DIR` and "
        "`siuo-eval build finalize REVIEWED.csv --output DATA_DIR` (each has its own --help).",
    )
    build.add_argument("--images", type=Path, metavar="DIR", help="folder of source images (read recursively, sorted)")
    build.add_argument("--output", dest="build_output", type=Path, metavar="DIR", help="the build folder")
    build.add_argument("--count", type=int, default=None, help="use a seeded sample of N images (default: all)")
    build.add_argument("--seed", type=int, default=0, help="seed for --count sampling and option order (default 0)")
    build.add_argument("--categories", nargs="+", help="allowed categories (default: the 9 SIUO domains)")
    build.add_argument(
        "--generator-model",
        help=f"query + reflection (default: ${GENERATOR_MODEL_ENV}, else {DEFAULT_GENERATOR_MODEL})",
    )
    build.add_argument(
        "--answer-model", help=f"text-only answers (default: ${ANSWER_MODEL_ENV}, else {DEFAULT_ANSWER_MODEL})"
    )
    build.add_argument("--judge-model", help="text-safety judge (default: $SIUO_JUDGE_MODEL, else the default judge)")
    build.add_argument("--stage-attempts", type=int, default=3, help="tries per stage for malformed replies")
    build.add_argument("--force", action="store_true", help="replace existing outputs (never done otherwise)")
    build.set_defaults(run=_run_build, action=None, target=None, review_output=None, final_output=None)
    steps = build.add_subparsers(dest="action", metavar="{review,finalize}")
    review = steps.add_parser(
        "review", help="write review.csv / review.html for a build folder", usage="siuo-eval build review BUILD_DIR"
    )
    review.add_argument("target", metavar="BUILD_DIR", help="the build folder")
    review.add_argument("--review-output", type=Path, default=None, help="folder for review.csv/.html")
    review.add_argument("--force", action="store_true", help="replace an earlier review (never done otherwise)")
    finalize = steps.add_parser(
        "finalize",
        help="turn a reviewed CSV into a SIUO data folder",
        usage="siuo-eval build finalize REVIEWED.csv --output DATA_DIR [--merge-with SIUO_DIR]",
    )
    finalize.add_argument("target", metavar="REVIEWED.csv", help="the reviewed CSV")
    finalize.add_argument(
        "--output", dest="final_output", type=Path, metavar="DATA_DIR", help="the data folder to write"
    )
    finalize.add_argument("--build-dir", type=Path, default=None, help="the build folder (default: the CSV's)")
    finalize.add_argument("--merge-with", type=Path, default=None, help="also include this SIUO data folder")
    finalize.add_argument("--force", action="store_true", help="replace an existing data folder")
    audit = commands.add_parser("audit", help="check that each item's text alone and image alone are safe")
    audit.add_argument("--data-dir", default=None, help="SIUO data folder (default: $SIUO_DATA_DIR, else the hub)")
    audit.add_argument("--output", type=Path, required=True, help="folder for audit.json, audit.md, audit.html")
    audit.add_argument("--models", nargs="+", help="audit models (default: $SIUO_JUDGE_MODEL, else the default judge)")
    audit.add_argument(
        "--answer-model", help=f"text-only answer model (default: ${ANSWER_MODEL_ENV}, else {DEFAULT_ANSWER_MODEL})"
    )
    audit.add_argument("--stage-attempts", type=int, default=3, help="tries per check for malformed replies")
    audit.add_argument("--force", action="store_true", help="replace an earlier audit in --output")
    audit.set_defaults(run=_audit)


def _run_build(args: argparse.Namespace) -> int:
    if (args.count is not None and args.count < 1) or args.stage_attempts < 1:
        raise SiuoError("--count and --stage-attempts must be at least 1")
    return _build(args)
