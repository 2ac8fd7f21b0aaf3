"""In-run judging through the real lm-eval CLI (lm-evaluation-harness 0.4.13).

Runs ``lm_eval --model local-chat-completions --tasks <task>`` on all 167 items: the model under
test is the loopback model server (tests/helpers/model_server.py, OpenAI chat protocol, the
image sent with each prompt), the judge a loopback judge that answers after --latency seconds.
It measures the judging phase, from the first judge request the server sees to the last one
answered, against the ideal at the bound (calls x latency / SIUO_JUDGE_CONCURRENCY), and the
server's peak number of calls in flight. (When judging ran inside process_results, which
lm-eval calls one document at a time, at most one item's 2-6 calls were in flight: 91 s for
siuo_gen_greedy at 0.5 s latency and bound 32, against 5.2 s ideal.)

``--per-document`` runs a copy of the task folder without the judging filter, so each document
is judged inside its own process_results call (the fallback path), for comparison.

Usage (from the repository root):  python benchmarks/lm_eval_in_run_judging.py --latency 0.5
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from siuo_task.adapters.lm_eval import tasks_dir
from tests.helpers.fixture_data import write_data_dir
from tests.helpers.judge_server import JudgeServer
from tests.helpers.model_server import ModelServer


class PhaseClock:
    """Polls the server's log: when the first judge call was answered and when the last was."""

    def __init__(self, server: JudgeServer) -> None:
        self.server, self.first, self.last, self.seen = server, 0.0, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            count = len(self.server.log.exchanges)
            now = time.perf_counter()
            if count and not self.first:
                self.first = now
            if count > self.seen:
                self.seen, self.last = count, now
            time.sleep(0.01)

    def __enter__(self) -> PhaseClock:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def without_judging_filter(work: Path) -> Path:
    """A copy of the task folder whose generation tasks judge in process_results."""
    copy = work / "tasks_per_document"
    shutil.copytree(tasks_dir(), copy, dirs_exist_ok=True)
    for path in (copy / "siuo").glob("*.yaml"):
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        path.write_text("".join(line for line in lines if "utils.JudgeTogether" not in line), encoding="utf-8")
    return copy


def run(task: str, data_dir: Path, work: Path, latency: float, concurrency: int, include: Path) -> dict[str, float]:
    with (
        ModelServer() as model,
        JudgeServer(latency_s=latency, declines=False) as server,
        PhaseClock(server) as clock,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SIUO_", "OPENAI_"))}
        env.update(SIUO_DATA_DIR=str(data_dir), HF_HOME=str(work / "hf"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
        env.update(SIUO_JUDGE_BASE_URL=server.base_url, SIUO_JUDGE_API_KEY="sk-benchmark-0000000000")
        env.update(SIUO_JUDGE_CACHE="off", SIUO_JUDGE_CONCURRENCY=str(concurrency))
        out = work / task
        model_args = (
            f"model=test-model,base_url={model.base_url}/chat/completions,tokenizer_backend=None,num_concurrent=8"
        )
        command = [sys.executable, "-m", "lm_eval", "--model", "local-chat-completions", "--model_args", model_args]
        command += ["--tasks", task, "--include_path", str(include), "--apply_chat_template"]
        command += ["--output_path", str(out), "--log_samples"]
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
        if not list(out.glob("**/results_*.json")):
            raise SystemExit(f"lm-eval wrote no results for {task}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        calls = len(server.log.exchanges)
        # The clock sees a call when it is answered; the first one started `latency` earlier.
        wall = clock.last - clock.first + latency
        return {"calls": calls, "wall_s": wall, "peak": server.peak_in_flight}


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
        include = without_judging_filter(work) if args.per_document else tasks_dir()
        how = "per document in process_results" if args.per_document else "in the task's filter"
        print(f"latency {args.latency} s, SIUO_JUDGE_CONCURRENCY {args.concurrency}, 167 items, judged {how}")
        for task in args.tasks:
            result = run(task, data_dir, work, args.latency, args.concurrency, include)
            ideal = result["calls"] * args.latency / args.concurrency
            print(
                f"{task}: {result['calls']} judge calls, judging {result['wall_s']:.1f} s, "
                f"ideal {ideal:.1f} s, efficiency {ideal / result['wall_s']:.2f}, peak in flight {result['peak']}"
            )


if __name__ == "__main__":
    main()
