"""In-run judging through every harness's real CLI: lmms-eval, lm-eval, Inspect, VLMEvalKit.

Each harness runs siuo_gen_greedy and siuo_gen (VLMEvalKit: SafeInputsUnsafeOutput_GEN1 and
_GEN3) on all 167 items with its OpenAI-compatible API model class against the loopback model
server (tests/helpers/model_server.py), and a loopback judge that answers after --latency
seconds (tests/helpers/judge_server.py, cache off, SIUO_JUDGE_CONCURRENCY=--concurrency):

- lmms-eval: ``--model openai --model_args model=test-model,base_url=<url>,api_key=EMPTY``
- lm-eval: ``--model local-chat-completions`` (num_concurrent=8), our task folder, chat template
- Inspect: ``inspect eval siuo_task/<task> --model openai-api/loop/test-model``
- VLMEvalKit: ``python -m siuo_task.vlmeval --model test-model --base-url <url> --api-nproc 8``

The judging phase runs from the first judge call the server sees to the last one answered (the
judge check before generation is not counted; see benchmarks/_in_run.py). Ideal = calls x
latency / bound; efficiency = ideal / measured. Prints one Markdown table.

Usage (from the repository root):  python benchmarks/in_run_judging.py --latency 0.5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._in_run import HARNESSES, Measured, measure, table
from tests.helpers.fixture_data import write_data_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.5, help="seconds each judge reply takes")
    parser.add_argument("--concurrency", type=int, default=32, help="SIUO_JUDGE_CONCURRENCY")
    parser.add_argument("--harness", action="append", choices=sorted(HARNESSES), help="repeatable; default: all four")
    parser.add_argument("--tasks", nargs="+", default=["siuo_gen_greedy", "siuo_gen"])
    args = parser.parse_args()
    harnesses = args.harness or list(HARNESSES)
    results: list[Measured] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data_dir = write_data_dir(work / "data")
        print(f"latency {args.latency} s, SIUO_JUDGE_CONCURRENCY {args.concurrency}, 167 items, cache off", flush=True)
        for name in harnesses:
            for task in args.tasks:
                result = measure(HARNESSES[name], task, data_dir, work, args.latency, args.concurrency)
                results.append(result)
                print(
                    f"  {name} {task}: {result.calls} calls, {result.wall_s:.1f} s, efficiency "
                    f"{result.efficiency:.2f}, peak {result.peak} "
                    f"(exit {result.returncode}, {result.probes} probe calls, "
                    f"model requests over {result.generation_s:.1f} s)",
                    flush=True,
                )
    print(table(results))


if __name__ == "__main__":
    main()
