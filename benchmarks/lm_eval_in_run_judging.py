"""In-run judging through the real lm-eval CLI (lm-evaluation-harness 0.4.13).

Runs ``lm_eval --model local-chat-completions --tasks <task>`` on all 167 items: the model under
test is the loopback model server (tests/helpers/model_server.py, OpenAI chat protocol, the
image sent with each prompt), the judge a loopback judge that answers after --latency seconds.
It measures the judging phase, from the first judge request the server sees to the last one
answered, against the ideal at the bound (calls x latency / SIUO_JUDGE_CONCURRENCY), and the
server's peak number of calls in flight. (When judging ran inside process_results, which
lm-eval calls one document at a time, at most one item's 2-6 calls were in flight: 91 s for
siuo_gen_greedy at 0.5 s latency and bound 32, against 5.2 s ideal.)
The measuring code is benchmarks/_in_run.py; benchmarks/in_run_judging.py runs all harnesses.

``--per-document`` runs a copy of the task folder without the judging filter, so each document
is judged inside its own process_results call (the fallback path), for comparison.

Usage (from the repository root):  python benchmarks/lm_eval_in_run_judging.py --latency 0.5
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._in_run import HARNESSES, line, lm_eval_command, measure
from siuo_task.adapters.lm_eval import tasks_dir
from tests.helpers.fixture_data import write_data_dir


def without_judging_filter(work: Path) -> Path:
    """A copy of the task folder whose generation tasks judge in process_results."""
    copy = work / "tasks_per_document"
    shutil.copytree(tasks_dir(), copy, dirs_exist_ok=True)
    for path in (copy / "siuo").glob("*.yaml"):
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        path.write_text("".join(line for line in lines if "utils.JudgeTogether" not in line), encoding="utf-8")
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--tasks", nargs="+", default=["siuo_gen_greedy", "siuo_gen"])
    parser.add_argument("--per-document", action="store_true", help="judge in process_results (no filter)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data_dir = write_data_dir(work / "data")
        harness = HARNESSES["lm-eval"]
        if args.per_document:
            harness = dataclasses.replace(harness, command=lm_eval_command(without_judging_filter(work)))
        how = "per document in process_results" if args.per_document else "in the task's filter"
        print(f"latency {args.latency} s, SIUO_JUDGE_CONCURRENCY {args.concurrency}, 167 items, judged {how}")
        for task in args.tasks:
            print(line(measure(harness, task, data_dir, work, args.latency, args.concurrency)))


if __name__ == "__main__":
    main()
