"""Reasoning traces through Inspect's siuo_gen_greedy, really run, traces judged too
(SIUO_JUDGE_TRACES=1): the model replies with closed, unclosed and prefilled traces and plain
answers. Inspect's provider moves closed <think> blocks out of the completion; the scorer must
still see the trace, and the numbers must equal lmms-eval's hooks on the replies as sent.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from siuo_task.adapters.inspect_ai.responses import response_text
from siuo_task.adapters.inspect_ai.scoring import numeric_metrics
from siuo_task.adapters.lmms_eval import hooks
from siuo_task.benchmark.reasoning import split_reasoning
from siuo_task.benchmark.results import GEN_REDUCERS, SUMMARY_ROW, reduce_values
from tests.helpers.chat_server import ChatHandler, LoopbackServer, chat_completion, message_text, send_json
from tests.helpers.cli_runs import judge_env
from tests.helpers.harness_cli import harness_command
from tests.helpers.judge_server import JudgeServer

pytestmark = pytest.mark.slow

ITEMS = 8
REPLIES = (
    "<think>The picture hints at a risk; warn first.</think>Please be careful: {n}.",
    "<think>Still weighing what to say about {n}",  # unclosed: trace only
    "Weighing it up ({n})</think>Stop and ask someone you trust.",  # opening tag prefilled
    "A plain answer, no trace ({n}).",
)


def _reply(prompt: str) -> str:
    digest = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
    return REPLIES[digest % len(REPLIES)].format(n=digest % 1000)


class _Handler(ChatHandler):
    """The reasoning model: replies by a hash of the prompt, keeping what it sent."""

    def chat(self, body: dict[str, Any]) -> None:
        prompt = message_text(body["messages"][-1])
        reply = _reply(prompt)
        with self.server.lock:
            self.server.sent[prompt] = reply  # type: ignore[attr-defined]
        send_json(self, 200, chat_completion(reply, "m", "c"))


@pytest.fixture(scope="module")
def traced_run(small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from inspect_ai.log import read_eval_log

    root = tmp_path_factory.mktemp("inspect_reasoning")
    with LoopbackServer(_Handler, sent={}) as model, JudgeServer() as judge:
        env = judge_env(small_data_dir, judge.base_url, "off", SIUO_JUDGE_TRACES="1")
        env = {k: v for k, v in env.items() if not k.startswith("INSPECT_")}
        env.update(INSPECT_LOG_DIR=str(root), INSPECT_DISPLAY="plain", LOOP_API_KEY="k", LOOP_BASE_URL=model.base_url)
        options = ["--log-format", "json", "--limit", str(ITEMS)]
        command = harness_command(
            "Inspect", model.base_url, root, False, ("siuo_gen_greedy",), extra=options, model="m"
        )
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        [path] = root.glob("*.json")
        log = read_eval_log(str(path))
        run = {"proc": proc, "log": log, "sent": dict(model.httpd.sent), "exchanges": list(judge.log.exchanges)}
        # lmms-eval's hooks on the replies as the model sent them, judged by the same server.
        saved = dict(os.environ)
        os.environ.update({k: v for k, v in env.items() if k.startswith("SIUO_")})
        try:
            docs = {doc["question_id"]: doc for doc in hooks.process_docs_gen(None)}
            run["lmms"] = [
                hooks.process_results_gen(docs[int(s.id)], [run["sent"][s.input[0].content[1].text]])
                for s in log.samples
            ]
        finally:
            os.environ.clear()
            os.environ.update(saved)
        yield run


def test_the_scorer_sees_the_trace_inspect_moved_out(traced_run: dict[str, Any]) -> None:
    proc = traced_run["proc"]
    # The test judge declines a few texts: judge errors end `inspect eval` with status 1, naming
    # the command that finishes the scoring; a run without them ends with 0.
    failed = "judge calls failed" in proc.stderr
    assert proc.returncode == (1 if failed else 0), proc.stderr[-3000:]
    assert not failed or "siuo-eval judge " in proc.stderr.strip().splitlines()[-2]
    log = traced_run["log"]
    assert log.status == "success" and len(log.samples) == ITEMS
    for sample in log.samples:
        sent = traced_run["sent"][sample.input[0].content[1].text]
        assert split_reasoning(response_text(sample.output)) == split_reasoning(sent)
    closed = [s for s in log.samples if traced_run["sent"][s.input[0].content[1].text].startswith("<think>The")]
    assert closed and all("<think>" not in s.output.completion for s in closed)  # Inspect took it out
    kinds = {(e.kind, e.response) for e in traced_run["exchanges"]}
    for sample in closed:
        trace = split_reasoning(response_text(sample.output)).trace
        assert trace and ("safety", trace) in kinds  # the trace was judged on its own


def test_traced_numbers_equal_the_lmms_eval_path(traced_run: dict[str, Any]) -> None:
    metrics = {n: m.value for score in traced_run["log"].results.scores for n, m in score.metrics.items()}
    lmms = numeric_metrics(reduce_values([values[SUMMARY_ROW] for values in traced_run["lmms"]], GEN_REDUCERS))
    assert lmms["trace_only_responses"] > 0 and "trace_safe_rate" in lmms
    compared = [n for n in lmms if "rate" in n or n in ("judge_errors", "items_undecided", "trace_only_responses")]
    assert len(compared) > 20
    for name in compared:
        assert metrics[name] == lmms[name], name
    # Needs the closed traces Inspect moved out of the completion.
    assert metrics["trace_safe_rate"] == lmms["trace_safe_rate"]
