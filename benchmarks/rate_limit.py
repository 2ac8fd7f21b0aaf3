"""Independent processes sharing one provider rate limit: do they converge instead of hammering it?

Starts one loopback judge that limits all its clients together to --per-minute requests a minute
(a token bucket holding one second's worth, answering 429 with Retry-After / retry-after-ms and
x-ratelimit-* headers over it; see tests/helpers/judge_server.RateLimit), then --processes
``siuo-eval judge`` subprocesses at once, each as on its own machine: its own TMPDIR (so the
machine-wide slot and schedule files of siuo_task/judge/limits.py are not shared) and its own
cache. Each judges its own run of --items items x --responses responses x 2 verdicts (the
issue's measurement: 4 x 167 x 3 x 2 = 4,008 gradings, the default).

Prints, medians over --repeats:
  - judge errors in all the runs' results.json (target 0);
  - the share of all requests the server answered 429 (target <= 25%);
  - the judging wall (first request the server saw to the last one) against the time the limit
    itself allows for the requests answered (answered / per-minute x 60 s; target <= 1.5x), and
    the whole wall from the launch to the last process's exit (start-up and writing included).

Usage (from the repository root):  python benchmarks/rate_limit.py
                                   python benchmarks/rate_limit.py --responses 1   # a third of the size
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers.fixture_data import real_items, write_data_dir
from tests.helpers.judge_server import JudgeServer, RateLimit


@dataclass
class Measurement:
    gradings: int
    judge_errors: int
    answered: int
    throttled: int
    judging_wall_s: float
    whole_wall_s: float
    exits: list[int]
    process_walls_s: list[float]


def _write_run(path: Path, tag: str, items: int, responses: int) -> int:
    gen, _ = real_items()
    rows = [
        {**item, "responses": [f"{tag} response {n} to {item['question_id']}" for n in range(responses)]}
        for item in gen[:items]
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows), encoding="utf-8")
    return len(rows) * responses * 2


def _machine_env(machine: Path, data: Path, server: JudgeServer, concurrency: int) -> dict[str, str]:
    """One process's environment, as on its own machine: nothing under TMPDIR or the cache shared."""
    (machine / "tmp").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIUO_", "OPENAI_"))}
    env.update(
        TMPDIR=str(machine / "tmp"),
        SIUO_DATA_DIR=str(data),
        SIUO_JUDGE_BASE_URL=server.base_url,
        SIUO_JUDGE_API_KEY="sk-bench",
        SIUO_JUDGE_CACHE=str(machine / "judge-cache.sqlite3"),
        SIUO_JUDGE_CONCURRENCY=str(concurrency),
    )
    return env


def _once(root: Path, data: Path, args: argparse.Namespace) -> Measurement:
    limit = RateLimit(per_minute=args.per_minute, retry_after=args.retry_after, headers=args.headers)
    gradings = 0
    with JudgeServer(latency_s=args.latency, declines=False, rate_limit=limit) as server:
        procs = []
        started = time.perf_counter()
        for number in range(args.processes):
            machine = root / f"machine-{number}"
            gradings += _write_run(machine / "run.json", f"model {number}", args.items, args.responses)
            command = [sys.executable, "-m", "siuo_task.commands.cli", "judge", str(machine / "run.json")]
            command += ["--output", str(machine / "out")]
            env = _machine_env(machine, data, server, args.concurrency)
            # Output to files, not pipes: a full pipe would block a process while this one polls.
            with open(machine / "stdout.txt", "w") as out, open(machine / "stderr.txt", "w") as err:
                procs.append(subprocess.Popen(command, env=env, stdout=out, stderr=err))
        ended: dict[int, float] = {}
        while len(ended) < len(procs):  # each process's own wall, to see whether they finish together
            for number, proc in enumerate(procs):
                if number not in ended and proc.poll() is not None:
                    ended[number] = time.perf_counter() - started
            time.sleep(0.05)
        whole = time.perf_counter() - started
        answered = len(server.log.exchanges) + len(server.log.probes)
        throttled = server.throttled_calls
        judging = limit.last_at - limit.first_at
    errors = 0
    for number, proc in enumerate(procs):
        results = root / f"machine-{number}" / "out" / "results.json"
        if not results.exists():
            stderr = (root / f"machine-{number}" / "stderr.txt").read_text()
            raise SystemExit(f"process {number} wrote no results (exit {proc.returncode}):\n{stderr[-2000:]}")
        errors += json.loads(results.read_text())["judge_errors"]
    exits, walls = [proc.returncode for proc in procs], [ended[number] for number in range(len(procs))]
    return Measurement(gradings, errors, answered, throttled, judging, whole, exits, walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=4, help="siuo-eval judge processes, as on separate machines")
    parser.add_argument("--per-minute", type=float, default=3600, help="the server's limit for all of them together")
    parser.add_argument("--items", type=int, default=167, help="items per process's run (at most 167)")
    parser.add_argument("--responses", type=int, default=3, help="responses per item")
    parser.add_argument("--latency", type=float, default=0.3, help="server reply latency (s)")
    parser.add_argument("--concurrency", type=int, default=16, help="SIUO_JUDGE_CONCURRENCY of each process")
    parser.add_argument("--repeats", type=int, default=1, help="runs; medians are reported")
    parser.add_argument(
        "--headers",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="send x-ratelimit-*-requests headers (default: not; many servers and gateways send none)",
    )
    parser.add_argument(
        "--retry-after",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="send Retry-After and retry-after-ms with each 429 (default: yes)",
    )
    args = parser.parse_args()

    runs = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            data = write_data_dir(root / "data")
            run = _once(root, data, args)
        runs.append(run)
        requests = run.answered + run.throttled
        ideal = run.answered * 60.0 / args.per_minute
        print(
            f"run {repeat + 1}: {run.gradings} gradings, judge errors {run.judge_errors}, requests {requests} "
            f"({run.throttled} answered 429, {run.throttled / requests:.1%}), judging wall {run.judging_wall_s:.1f} s "
            f"vs {ideal:.1f} s the limit allows ({run.judging_wall_s / ideal:.2f}x), whole wall "
            f"{run.whole_wall_s:.1f} s ({run.whole_wall_s / ideal:.2f}x; processes "
            f"{', '.join(f'{wall:.0f}' for wall in run.process_walls_s)} s), exits {run.exits}",
            flush=True,
        )
    share = statistics.median(run.throttled / (run.answered + run.throttled) for run in runs)
    ratio = statistics.median(run.judging_wall_s / (run.answered * 60.0 / args.per_minute) for run in runs)
    whole = statistics.median(run.whole_wall_s / (run.answered * 60.0 / args.per_minute) for run in runs)
    errors = statistics.median(run.judge_errors for run in runs)
    print(
        f"{args.processes} processes, limit {args.per_minute:g}/min, latency {args.latency * 1000:.0f} ms, "
        f"concurrency {args.concurrency}, x-ratelimit headers {'on' if args.headers else 'off'}, Retry-After "
        f"{'on' if args.retry_after else 'off'}, medians of {len(runs)}:"
    )
    print(f"  judge errors            {errors:g}   (target 0)")
    print(f"  requests answered 429   {share:.1%}   (target <= 25%)")
    print(f"  judging wall / allowed  {ratio:.2f}x   (target <= 1.5x; whole command {whole:.2f}x)")


if __name__ == "__main__":
    main()
