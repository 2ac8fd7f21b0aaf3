"""Judge-engine throughput on the paper workload (167 items x 3 responses x 2 verdicts = 1,002 calls).

Starts a loopback chat-completions server that answers after a fixed latency, then measures:
  - sequential: concurrency 1 (like the authors' script, without its sleep), on a sample of
    calls, reported as measured calls/s and the extrapolated time for 1,002 calls;
  - engine: the full workload at --concurrency (default 32) from a cold cache;
  - warm: the full workload again from the warm cache (expect zero server calls).
For each it prints wall time, calls/s, efficiency against the ideal (calls x latency /
concurrency) and the peak number of requests the server saw in flight. Medians over --repeats.

Usage (from the repository root):  python benchmarks/judge_throughput.py --latency 0.5 0.1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from siuo_task.benchmark.data import load_siuo
from siuo_task.benchmark.reasoning import ReasoningSettings
from siuo_task.harness.judging import judge_values
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine
from siuo_task.runs.files import ResponseSet
from tests.helpers.fixture_data import write_data_dir
from tests.helpers.judge_server import JudgeServer


@dataclass
class Measurement:
    calls: int
    server_calls: int
    wall_s: float
    peak_in_flight: int


def _pairs(data_dir: Path) -> list:
    data = load_siuo(data_dir)
    return [
        (item, ResponseSet(item.question_id, tuple(f"response {n} to {item.question_id}" for n in range(3))))
        for item in data.gen
    ]


def _run(server: JudgeServer, pairs: list, concurrency: int, cache: Path | None) -> Measurement:
    """One pass over ``pairs``; the cache key includes the endpoint, so a warm pass reuses the server."""
    server.attempts.clear()
    server.reset_peak()
    config = JudgeConfig(
        base_url=server.base_url, api_key="sk-bench", concurrency=concurrency, cache_path=cache, max_attempts=1
    )
    engine = JudgeEngine(config)
    started = time.perf_counter()
    values = judge_values(pairs, engine, ReasoningSettings())
    wall = time.perf_counter() - started
    engine.close()
    calls = sum(2 * len(pair[1].responses) for pair in pairs)
    assert len(values) == len(pairs)
    return Measurement(calls, sum(server.attempts.values()), wall, server.peak_in_flight)


def _report(label: str, runs: list[Measurement], latency: float, concurrency: int, extrapolate_to: int = 0) -> None:
    wall = statistics.median(r.wall_s for r in runs)
    calls = runs[0].calls
    ideal = calls * latency / concurrency
    rate = calls / wall
    line = (
        f"{label:<34} calls={calls:<5} server_calls={runs[0].server_calls:<5} wall={wall:8.2f}s "
        f"calls/s={rate:8.1f} ideal={ideal:7.2f}s efficiency={ideal / wall:6.1%} peak_in_flight="
        f"{max(r.peak_in_flight for r in runs)}"
    )
    if extrapolate_to:
        line += f"  (x{extrapolate_to / calls:.1f} -> {extrapolate_to / rate:.0f}s for {extrapolate_to} calls)"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, nargs="+", default=[0.5, 0.1], help="server latency (s)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; medians are reported")
    parser.add_argument("--sequential-items", type=int, default=10, help="items in the sequential sample")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        pairs = _pairs(write_data_dir(root / "data"))
        print(f"workload: {len(pairs)} items x 3 responses x 2 verdicts = {6 * len(pairs)} judge calls")
        for latency in args.latency:
            print(f"\n-- server latency {latency * 1000:.0f} ms --")
            sample = pairs[: args.sequential_items]
            cold, warm = [], []
            with JudgeServer(latency_s=latency, declines=False) as server:
                runs = 1 if latency >= 0.5 else args.repeats
                sequential = [_run(server, sample, 1, None) for _ in range(runs)]
                for repeat in range(args.repeats):
                    cache = root / f"cache-{latency}-{repeat}.sqlite3"
                    cold.append(_run(server, pairs, args.concurrency, cache))
                    warm.append(_run(server, pairs, args.concurrency, cache))
            _report("sequential (concurrency 1)", sequential, latency, 1, extrapolate_to=6 * len(pairs))
            _report(f"engine (concurrency {args.concurrency}), cold cache", cold, latency, args.concurrency)
            seq_rate = sequential[0].calls / statistics.median(r.wall_s for r in sequential)
            cold_rate = cold[0].calls / statistics.median(r.wall_s for r in cold)
            print(f"{'  speed-up over sequential':<34} {cold_rate / seq_rate:.1f}x")
            wall = statistics.median(r.wall_s for r in warm)
            calls = max(r.server_calls for r in warm)
            print(f"{'warm cache rerun':<34} wall={wall:.2f}s server_calls={calls}")


if __name__ == "__main__":
    main()
