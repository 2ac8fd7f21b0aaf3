"""In-run judging through the real lmms-eval CLI, with lmms-eval's default flags.

Runs ``lmms-eval --model dummy --tasks <task>`` on all 167 items against a loopback judge that
answers after --latency seconds, and measures the judging phase: from the first judge request
the server sees to the last one answered. Prints it against the ideal at the bound
(calls x latency / SIUO_JUDGE_CONCURRENCY) and the server's peak number of calls in flight.
(Before judging moved into the task's filter, lmms-eval's 4 post-processing workers capped
calls in flight at 4 x 2 = 8 for siuo_gen_greedy and 4 x 6 = 24 for siuo_gen.)
The measuring code is benchmarks/_in_run.py; benchmarks/in_run_judging.py runs all harnesses.

Usage (from the repository root):  python benchmarks/lmms_eval_in_run_judging.py --latency 0.5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._in_run import LMMS_EVAL_DUMMY, line, measure
from tests.helpers.fixture_data import write_data_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--tasks", nargs="+", default=["siuo_gen_greedy", "siuo_gen"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data_dir = write_data_dir(work / "data")
        print(f"latency {args.latency} s, SIUO_JUDGE_CONCURRENCY {args.concurrency}, lmms-eval default flags")
        for task in args.tasks:
            print(line(measure(LMMS_EVAL_DUMMY, task, data_dir, work, args.latency, args.concurrency)))


if __name__ == "__main__":
    main()
