"""What the in-run judging benchmarks share: the harness commands, the judge-phase clock, one run.

A run starts a loopback model server (for the harnesses' OpenAI-compatible API model classes)
and a loopback judge that answers after ``latency`` seconds, runs one harness CLI as a
subprocess with the judge settings in its environment, and measures the judging phase: from the
first judge call the server sees to the last one answered. The judge check before generation
(siuo_task.harness.preflight's probe, logged apart in ``JudgeServer.log.probes``) is not judging: the
clock ignores probes, and the peak in flight is counted from the first probe on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.judge_server import JudgeServer
from tests.helpers.model_server import ModelServer

JUDGE_KEY = "sk-benchmark-0000000000"


class PhaseClock:
    """Polls a count (by default the judge server's logged judge calls): when it first rose and
    when it last did.

    Probe calls are not judging: each time a probe is logged before any judging call, the
    server's peak is reset, so the peak counts judging calls only.
    """

    def __init__(self, server: JudgeServer, count: Callable[[], int] | None = None) -> None:
        self.server, self.first, self.last, self.seen, self.probes = server, 0.0, 0.0, 0, 0
        self._count = count or (lambda: len(server.log.exchanges))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            count = self._count()
            probes = len(self.server.log.probes)
            now = time.perf_counter()
            if probes > self.probes:
                self.probes = probes
                if not len(self.server.log.exchanges):
                    self.server.reset_peak()
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


@dataclass(frozen=True)
class Harness:
    """How one harness's real CLI runs one of our tasks.

    ``command(task, model_url, out)`` is the argv; ``env(model_url, out)`` what it needs in its
    environment beyond the judge settings; ``outputs`` a glob under ``out`` that only a finished
    run writes; ``tasks`` maps our task names to the harness's (VLMEvalKit's dataset names).
    """

    name: str
    command: Callable[[str, str, Path], list[str]]
    outputs: str
    env: Callable[[str, Path], dict[str, str]] = lambda url, out: {}
    tasks: dict[str, str] = field(default_factory=dict)

    def task_name(self, task: str) -> str:
        return self.tasks.get(task, task)


def _lmms_eval_openai(task: str, url: str, out: Path) -> list[str]:
    model_args = f"model=test-model,base_url={url},api_key=EMPTY"
    argv = [sys.executable, "-m", "lmms_eval", "--model", "openai", "--model_args", model_args, "--tasks", task]
    return [*argv, "--output_path", str(out)]


def _lmms_eval_dummy(task: str, url: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "lmms_eval", "--model", "dummy", "--tasks", task, "--output_path", str(out)]


def lm_eval_command(include: Path | None = None) -> Callable[[str, str, Path], list[str]]:
    """lm-eval's local-chat-completions model on our task folder (``include``, or the package's)."""

    def command(task: str, url: str, out: Path) -> list[str]:
        from siuo_task.adapters.lm_eval import tasks_dir

        model_args = f"model=test-model,base_url={url}/chat/completions,tokenizer_backend=None,num_concurrent=8"
        argv = [sys.executable, "-m", "lm_eval", "--model", "local-chat-completions", "--model_args", model_args]
        argv += ["--tasks", task, "--include_path", str(include or tasks_dir()), "--apply_chat_template"]
        return [*argv, "--output_path", str(out), "--log_samples"]

    return command


def _inspect(task: str, url: str, out: Path) -> list[str]:
    inspect = Path(sys.executable).with_name("inspect")
    return [str(inspect), "eval", f"siuo_task/{task}", "--model", "openai-api/loop/test-model", "--log-format", "json"]


def _inspect_env(url: str, out: Path) -> dict[str, str]:
    return {"LOOP_API_KEY": "model-key", "LOOP_BASE_URL": url, "INSPECT_LOG_DIR": str(out), "INSPECT_DISPLAY": "plain"}


def _vlmeval(task: str, url: str, out: Path) -> list[str]:
    argv = [sys.executable, "-m", "siuo_task.vlmeval", "--model", "test-model", "--base-url", url, "--data", task]
    return [*argv, "--work-dir", str(out), "--api-nproc", "8"]


def _vlmeval_env(url: str, out: Path) -> dict[str, str]:
    return {"LMUData": str(out / "lmu")}


def vlmeval_tasks() -> dict[str, str]:
    from siuo_task.adapters.vlmevalkit.names import GEN_PAPER, GEN_SINGLE

    return {"siuo_gen_greedy": GEN_SINGLE, "siuo_gen": GEN_PAPER}


HARNESSES: dict[str, Harness] = {
    "lmms-eval": Harness("lmms-eval", _lmms_eval_openai, "**/*_results.json"),
    "lm-eval": Harness("lm-eval", lm_eval_command(), "**/results_*.json"),
    "inspect": Harness("inspect", _inspect, "*.json", env=_inspect_env),
    "vlmevalkit": Harness("vlmevalkit", _vlmeval, "**/*_siuo_results.json", env=_vlmeval_env, tasks=vlmeval_tasks()),
}
LMMS_EVAL_DUMMY = Harness("lmms-eval", _lmms_eval_dummy, "**/*_results.json")


@dataclass
class Measured:
    harness: str
    task: str
    calls: int
    wall_s: float
    ideal_s: float
    peak: int
    probes: int
    returncode: int
    # First to last request the model server answered: where judging overlaps generation
    # (Inspect scores each sample as it finishes), this bounds the judging phase from below.
    generation_s: float = 0.0

    @property
    def efficiency(self) -> float:
        return self.ideal_s / self.wall_s if self.wall_s > 0 else float("nan")


def measure(harness: Harness, task: str, data_dir: Path, work: Path, latency: float, concurrency: int) -> Measured:
    """Run ``task`` through ``harness``'s CLI once and time its judging phase."""
    out = work / f"{harness.name}-{task}"
    with (
        ModelServer() as model,
        JudgeServer(latency_s=latency, declines=False) as judge,
        PhaseClock(judge) as clock,
        PhaseClock(judge, lambda: sum(model.prompts.values())) as generation,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SIUO_", "OPENAI_", "INSPECT_"))}
        env.update(SIUO_DATA_DIR=str(data_dir), HF_HOME=str(work / "hf"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
        env.update(SIUO_JUDGE_BASE_URL=judge.base_url, SIUO_JUDGE_API_KEY=JUDGE_KEY)
        env.update(SIUO_JUDGE_CACHE="off", SIUO_JUDGE_CONCURRENCY=str(concurrency))
        env.update(harness.env(model.base_url, out))
        out.mkdir(parents=True, exist_ok=True)
        command = harness.command(harness.task_name(task), model.base_url, out)
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800, cwd=out)
        if not list(out.glob(harness.outputs)):
            raise SystemExit(
                f"{harness.name} wrote no results for {task} (exit {proc.returncode}):\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
            )
        time.sleep(0.05)  # one more poll of the log
    calls = len(judge.log.exchanges)
    # The clock sees a call when it is answered; the first one started `latency` earlier.
    wall = clock.last - clock.first + latency if calls else 0.0
    ideal = calls * latency / concurrency
    probes = len(judge.log.probes)
    generated = generation.last - generation.first
    return Measured(harness.name, task, calls, wall, ideal, judge.peak_in_flight, probes, proc.returncode, generated)


def line(result: Measured) -> str:
    """The one-line form the single-harness scripts have always printed."""
    return (
        f"{result.task}: {result.calls} judge calls, judging {result.wall_s:.1f} s, "
        f"ideal {result.ideal_s:.1f} s, efficiency {result.efficiency:.2f}, peak in flight {result.peak}"
    )


def table(results: list[Measured]) -> str:
    """A Markdown table: harness, task, judge calls, judging wall s, ideal s, efficiency, peak."""
    rows = [
        "| harness | task | judge calls | judging wall s | ideal s | efficiency | peak in flight |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rows.append(
            f"| {r.harness} | `{r.task}` | {r.calls:,} | {r.wall_s:.1f} | {r.ideal_s:.1f} | "
            f"{r.efficiency:.2f} | {r.peak} |"
        )
    return "\n".join(rows)
