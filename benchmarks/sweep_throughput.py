"""A whole sweep judged by one ``siuo-eval judge`` command, and what coalescing saves.

1. Sweep: --runs runs (default 5) of the paper workload (167 items x 3 responses x 2 verdicts =
   1,002 calls each, all distinct) in the authors' format under one folder, judged by one
   ``siuo-eval judge FOLDER --output OUT`` (a real subprocess: discovery, probe, progress bar,
   writing) against a loopback judge with a fixed reply latency. Prints the whole command's
   wall time against the ideal (calls x latency / concurrency) and the server's peak in flight.
2. Coalescing: one run whose 3 responses per item are identical (a refusing model), cache off:
   requests, calls the server received, calls saved.

Usage (from the repository root):  python benchmarks/sweep_throughput.py --latency 0.5 --concurrency 32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers.fixture_data import real_items, write_data_dir
from tests.helpers.judge_server import JudgeServer


def _write_run(path: Path, tag: str, identical: bool = False) -> None:
    gen, _ = real_items()
    rows = []
    for item in gen:
        text = f"{tag} response to {item['question_id']}"
        responses = [text] * 3 if identical else [f"{text}, sample {n}" for n in range(3)]
        rows.append({**item, "responses": responses})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows), encoding="utf-8")


def _judge(inputs: Path, output: Path, data: Path, server: JudgeServer, concurrency: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIUO_", "OPENAI_"))}
    env.update(
        SIUO_DATA_DIR=str(data),
        SIUO_JUDGE_BASE_URL=server.base_url,
        SIUO_JUDGE_API_KEY="sk-bench",
        SIUO_JUDGE_CACHE="off",
        SIUO_JUDGE_CONCURRENCY=str(concurrency),
    )
    command = [sys.executable, "-m", "siuo_task.commands.cli", "judge", str(inputs), "--output", str(output)]
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"siuo-eval judge failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.5, help="server reply latency (s)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        data = write_data_dir(root / "data")
        for number in range(args.runs):
            _write_run(root / "sweep" / f"model-{number}.json", f"model {number}")
        _write_run(root / "refuser" / "refuser.json", "refusal", identical=True)
        with JudgeServer(latency_s=args.latency, declines=False) as server:
            wall = _judge(root / "sweep", root / "out", data, server, args.concurrency)
            calls = sum(server.attempts.values())
            peak = server.peak_in_flight
            server.attempts.clear()
            _judge(root / "refuser", root / "out-refuser", data, server, args.concurrency)
            refuser_calls = sum(server.attempts.values())
        ideal = calls * args.latency / args.concurrency
        board = json.loads((root / "out" / "leaderboard.json").read_text())
        print(
            f"sweep: {args.runs} runs, {calls} judge calls, latency {args.latency * 1000:.0f} ms, "
            f"bound {args.concurrency}"
        )
        print(
            f"  whole command wall {wall:.1f} s, ideal {ideal:.1f} s, efficiency {ideal / wall:.1%}, "
            f"peak in flight {peak}, runs in leaderboard {len(board['runs'])}"
        )
        usage = json.loads((root / "out-refuser" / "refuser" / "results.json").read_text())["usage"]
        requests = 167 * 3 * 2
        print(
            f"coalescing (3 identical responses per item, cache off): {requests} requests, {refuser_calls} server "
            f"calls, {requests - refuser_calls} saved ({(requests - refuser_calls) / requests:.1%}); "
            f"judge_coalesced={usage['coalesced']}"
        )


if __name__ == "__main__":
    main()
