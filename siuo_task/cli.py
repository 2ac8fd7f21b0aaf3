"""``siuo-eval``: small commands around the SIUO tasks."""

from __future__ import annotations

import argparse
import sys

from siuo_task.errors import SiuoError


def _include_path(_: argparse.Namespace) -> int:
    from siuo_task.adapters.lmms_eval import tasks_dir

    print(tasks_dir())
    return 0


def _check(args: argparse.Namespace) -> int:
    from siuo_task.data import load_siuo
    from siuo_task.judge.config import JudgeConfig

    data = load_siuo(args.data_dir)
    print(f"data: {len(data.gen)} open-ended and {len(data.mcq)} multiple-choice items under {data.root}")
    if not args.skip_judge:
        config = JudgeConfig.from_env()
        print(f"judge: {config.model} at {config.endpoint}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siuo-eval", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    include = commands.add_parser("include-path", help="print the lmms-eval task folder (for --include_path)")
    include.set_defaults(run=_include_path)
    check = commands.add_parser("check", help="validate the data and judge settings before a long run")
    check.add_argument("--data-dir", default=None, help="SIUO data folder (default: $SIUO_DATA_DIR, else the hub)")
    check.add_argument("--skip-judge", action="store_true", help="check the data only")
    check.set_defaults(run=_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except SiuoError as exc:
        print(f"siuo-eval: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
