"""Inspect's ``grader`` model role as the judge, through Inspect's own CLI.

The model under test is the loopback model server behind ``openai-api/loop/...``; the grader is
the loopback judge server behind ``openai-api/grade/...`` (GRADE_BASE_URL), with no SIUO_JUDGE_*
variable set. The same run configured through SIUO_JUDGE_* against a fresh judge server (whose
replies depend on the request only) must score every sample and every metric the same.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli_runs import SECRET, clean_env
from tests.helpers.harness_cli import harness_command
from tests.helpers.in_process import siuo_eval_in_process
from tests.helpers.judge_server import JudgeServer, ReplyPlan, majority_of, seeded_declines, seeded_flips
from tests.helpers.model_server import ModelServer

pytestmark = pytest.mark.slow

MODEL = "openai-api/loop/test-model"
GRADER = "judge-x"  # the name the grader's provider asks its server for


def _env(data_dir: Path, model: ModelServer, logs: Path) -> dict[str, str]:
    env = clean_env(data_dir, "INSPECT_", "GRADE_", SIUO_JUDGE_CACHE="off", INSPECT_LOG_DIR=str(logs))
    env.update(LOOP_API_KEY="model-key", LOOP_BASE_URL=model.base_url, INSPECT_DISPLAY="plain")
    return env


def _inspect(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    logs, options = Path(env["INSPECT_LOG_DIR"]), ["--log-format", "json", *extra]
    command = harness_command("Inspect", env["LOOP_BASE_URL"], logs, False, tasks=("siuo_gen_greedy",), extra=options)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def _log(folder: Path) -> Any:
    from inspect_ai.log import read_eval_log

    (path,) = folder.glob("*.json")
    return read_eval_log(str(path))


def _run(data_dir: Path, root: Path, through_role: bool) -> dict[str, Any]:
    with ModelServer(sampled=False) as model, JudgeServer(only_model=GRADER) as judge:
        env = _env(data_dir, model, root / "logs")
        if through_role:
            env.update(GRADE_BASE_URL=judge.base_url, GRADE_API_KEY=SECRET)
            proc = _inspect(env, "--model-role", f"grader=openai-api/grade/{GRADER}")
        else:
            env.update(SIUO_JUDGE_BASE_URL=judge.base_url, SIUO_JUDGE_API_KEY=SECRET, SIUO_JUDGE_MODEL=GRADER)
            proc = _inspect(env)
        return {
            "proc": proc,
            "log": _log(root / "logs"),
            "exchanges": list(judge.log.exchanges),
            "probes": list(judge.log.probes),
            "models_asked": {body.get("model") for body in judge.bodies},
            "settings": {(body.get("temperature"), body.get("max_tokens")) for body in judge.bodies},
            "model_prompts": sum(model.prompts.values()),
        }


@pytest.fixture(scope="module")
def runs(small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    root = tmp_path_factory.mktemp("grader")
    return {
        "role": _run(small_data_dir, root / "role", through_role=True),
        "env": _run(small_data_dir, root / "env", through_role=False),
    }


def _values(log: Any) -> dict[str, Any]:
    return {sample.id: sample.scores["siuo_gen_judge"].value for sample in log.samples}


def _metrics(log: Any) -> dict[str, float]:
    return {name: metric.value for score in log.results.scores for name, metric in score.metrics.items()}


def test_every_judge_call_goes_to_the_grader(runs: dict[str, dict[str, Any]]) -> None:
    role = runs["role"]
    assert role["log"].status == "success", role["proc"].stderr[-3000:]
    samples = role["log"].samples
    answered = sum(1 for sample in samples if sample.output.completion.strip())
    # Two judge calls per answered item, and the check before generating, all at the grader's
    # endpoint with its key and model name; the model's server saw the items' prompts only.
    assert len(role["exchanges"]) == 2 * answered and len(role["probes"]) == 1
    assert {e.authorization for e in role["exchanges"]} == {f"Bearer {SECRET}"}
    assert role["models_asked"] == {GRADER}
    assert role["model_prompts"] == len(samples) == 18
    assert {e.image_mime for e in role["exchanges"]} == {"image/png"}
    assert role["log"].eval.metadata["judge_model_requested"] == f"openai-api/grade/{GRADER}"


def test_the_grader_calls_are_in_each_samples_transcript(runs: dict[str, dict[str, Any]]) -> None:
    role = runs["role"]
    replies = {(e.kind, e.response): e.reply for e in role["exchanges"]}
    logged = []
    for sample in role["log"].samples:
        events = [event for event in sample.events if event.event == "model" and event.role == "grader"]
        logged += [event.output.completion for event in events]
        # This sample's judge replies are in its own transcript.
        response = sample.output.completion
        for kind in ("safety", "effectiveness"):
            if response.strip():
                assert replies[(kind, response)] in [event.output.completion for event in events]
    # The check's call was made while the task was built, outside every sample.
    assert len(logged) == len(role["exchanges"]) and len(role["probes"]) == 1


def test_role_and_siuo_judge_settings_score_the_same(runs: dict[str, dict[str, Any]]) -> None:
    role, env = runs["role"], runs["env"]
    assert env["log"].status == "success", env["proc"].stderr[-3000:]
    assert sorted((e.kind, e.response, e.reply) for e in role["exchanges"]) == sorted(
        (e.kind, e.response, e.reply) for e in env["exchanges"]
    )
    assert role["settings"] == env["settings"] == {(0.0, 1024)}
    assert _values(role["log"]) == _values(env["log"])
    role_metrics, env_metrics = _metrics(role["log"]), _metrics(env["log"])
    assert role_metrics.keys() == env_metrics.keys()
    for name, value in env_metrics.items():
        if name != "judge_wall_seconds":
            assert role_metrics[name] == value, name
    assert role["proc"].returncode == env["proc"].returncode
    assert SECRET not in role["proc"].stdout + role["proc"].stderr


def test_an_even_list_of_graders_is_refused_before_anything_runs(small_data_dir: Path, tmp_path: Path) -> None:
    with ModelServer() as model:
        env = {**_env(small_data_dir, model, tmp_path / "logs"), "GRADE_BASE_URL": model.base_url, "GRADE_API_KEY": "k"}
        proc = _inspect(env, "--model-role", "grader=openai-api/grade/a,openai-api/grade/b")
        assert proc.returncode != 0
        assert "a panel needs an odd number of judges" in proc.stderr + proc.stdout
        assert sum(model.prompts.values()) == 0


# -- a list bound to the role is a panel ---------------------------------------------------------

RATES = ("safe_rate", "effective_rate", "safe_effective_rate")
# Three judges that each flip a seeded fifth of the verdicts, and one built to answer their majority.
PLANS: list[ReplyPlan | None] = [seeded_flips(0.2, seed, first_attempt=True) for seed in (1, 2, 3)]


@pytest.fixture(scope="module")
def panel_runs(small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("grader_panel")
    with ExitStack() as stack:
        model = stack.enter_context(ModelServer(sampled=False))
        judges = [stack.enter_context(JudgeServer(declines=False, reply_for=plan)) for plan in PLANS]
        majority = stack.enter_context(JudgeServer(declines=False, reply_for=majority_of(PLANS)))
        env = _env(small_data_dir, model, root / "panel")
        roles = []
        for letter, server in zip("abc", judges, strict=True):
            env.update({f"J{letter.upper()}_BASE_URL": server.base_url, f"J{letter.upper()}_API_KEY": SECRET})
            roles.append(f"openai-api/j{letter}/judge-{letter}")
        panel = _inspect(env, "--model-role", "grader=" + ",".join(roles))
        one_env = {**_env(small_data_dir, model, root / "one"), "JM_BASE_URL": majority.base_url, "JM_API_KEY": SECRET}
        one = _inspect(one_env, "--model-role", "grader=openai-api/jm/judge-majority")
        panel_log = next((root / "panel").glob("*.json"))
        calls, probes = [len(s.log.exchanges) for s in judges], [len(s.log.probes) for s in judges]
        # siuo-eval judge on the panel run's log, with the same three judges in a panel file.
        panel_file = root / "panel.yaml"
        lines = [
            f"  - {{model: judge-{letter}, base_url: {s.base_url}}}" for letter, s in zip("abc", judges, strict=True)
        ]
        panel_file.write_text("judges:\n" + "\n".join(lines) + "\n")
        rejudge_env = {**env, "SIUO_JUDGE_PANEL": str(panel_file), "SIUO_JUDGE_API_KEY": SECRET}
        rejudged = siuo_eval_in_process("judge", panel_log, "--output", root / "rejudged", env=rejudge_env)
        return {
            "panel": panel,
            "one": one,
            "panel_log": _log(root / "panel"),
            "one_log": _log(root / "one"),
            "calls": calls,
            "probes": probes,
            "rejudged": rejudged,
            "results": root / "rejudged" / "results.json",
        }


def test_a_list_of_graders_votes_like_one_judge_answering_their_majority(panel_runs: dict[str, Any]) -> None:
    log, one = panel_runs["panel_log"], panel_runs["one_log"]
    assert log.status == "success", panel_runs["panel"].stderr[-3000:]
    assert one.status == "success", panel_runs["one"].stderr[-3000:]
    panel_metrics, one_metrics = _metrics(log), _metrics(one)
    for name in RATES:
        assert panel_metrics[name] == one_metrics[name], name
    # Every grader was checked before generating, and asked every request; each call is a
    # grader event of its sample.
    assert panel_runs["probes"] == [1, 1, 1]
    answered = sum(1 for sample in log.samples if sample.output.completion.strip())
    assert panel_runs["calls"] == [2 * answered] * 3
    events = [e for sample in log.samples for e in sample.events if e.event == "model" and e.role == "grader"]
    assert len(events) == 3 * 2 * answered  # the checks were made before the run, in no sample
    assert {e.model for e in events} == {f"openai-api/j{letter}/judge-{letter}" for letter in "abc"}


def test_a_grader_panels_judges_and_kappas_are_siuo_eval_judges(panel_runs: dict[str, Any]) -> None:
    assert panel_runs["rejudged"].returncode == 0, panel_runs["rejudged"].stderr[-3000:]
    results = json.loads(panel_runs["results"].read_text())
    metrics = _metrics(panel_runs["panel_log"])
    panel = results["judge_panel"]
    assert [judge["model"] for judge in panel["judges"]] == ["judge-a", "judge-b", "judge-c"]
    for index, judge in enumerate(panel["judges"], 1):
        for name in RATES:
            assert metrics[f"judge{index}_{name}"] == judge[name], (index, name)
    for pair in panel["agreement"]:
        first, second = (1 + [j["judge"] for j in panel["judges"]].index(pair[side]) for side in ("a", "b"))
        for kind in ("safety", "effectiveness"):
            if pair[kind]["kappa"] is not None:
                assert metrics[f"kappa_{kind}_judge{first}_judge{second}"] == pair[kind]["kappa"]
    for name in RATES:
        assert metrics[name] == results[name], name


# -- the Python API, and the judge-health watches on the role's model ------------------------------

_PYTHON_EVAL = """
import sys
from inspect_ai import eval
(log,) = eval("siuo_task/siuo_gen_greedy", model="{model}", model_roles={{"grader": "openai-api/grade/{grader}"}},
              limit=4, log_dir=sys.argv[1], log_format="json", display="plain")
print("STATUS", log.status)
"""


def test_eval_model_roles_binds_the_grader_in_python(small_data_dir: Path, tmp_path: Path) -> None:
    with ModelServer(sampled=False) as model, JudgeServer(only_model=GRADER) as judge:
        env = {**_env(small_data_dir, model, tmp_path / "unused"), "GRADE_BASE_URL": judge.base_url}
        env["GRADE_API_KEY"] = SECRET
        script = _PYTHON_EVAL.format(model=MODEL, grader=GRADER)
        proc = subprocess.run(
            # From outside the repository: there, "siuo_task/..." would name the source folder, not the task.
            [sys.executable, "-c", script, str(tmp_path / "logs")],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
        graded, probes = len(judge.log.exchanges), len(judge.log.probes)
    assert "STATUS success" in proc.stdout, proc.stderr[-3000:]
    assert graded > 0 and probes == 1 and sum(model.prompts.values()) == 4
    log = _log(tmp_path / "logs")
    events = [e for sample in log.samples for e in sample.events if e.event == "model" and e.role == "grader"]
    assert len(events) == graded + probes


def test_a_grader_that_declines_is_stopped_by_the_decline_watch(small_data_dir: Path, tmp_path: Path) -> None:
    with ModelServer(sampled=False) as model, JudgeServer(fault_for=seeded_declines({"safety": 1.0})) as judge:
        env = {**_env(small_data_dir, model, tmp_path / "logs"), "GRADE_BASE_URL": judge.base_url}
        env.update(GRADE_API_KEY=SECRET, SIUO_JUDGE_DECLINE_WINDOW="4", SIUO_JUDGE_CONCURRENCY="1")
        proc = _inspect(env, "--model-role", f"grader=openai-api/grade/{GRADER}", "--max-connections", "1")
        safety_calls = sum(1 for e in judge.log.exchanges if e.kind == "safety")
    # As with SIUO_JUDGE_*: the decline watch stops the eval (Inspect logs the task as failed).
    log = _log(tmp_path / "logs")
    assert log.status == "error", proc.stdout[-3000:]
    assert f"the judge {GRADER} at {judge.base_url} declined" in log.error.message
    assert safety_calls < 18


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# A grader that cannot grade: (what the judge server does, what the one line says).
BROKEN_GRADERS = {
    "closed port": (None, "cannot reach the grader judge-x at http://127.0.0.1:{port}/v1"),
    "404": ({"only_model": "another-model"}, "the grader judge-x at http://127.0.0.1:{port}/v1 answered HTTP 404"),
    "wrong key": ({"fail_status": 401}, "the grader judge-x at http://127.0.0.1:{port}/v1 refused the API key"),
    "no verdict": ({"fault_for": lambda kind, response, attempt: "empty"}, "with an empty reply"),
}


@pytest.mark.parametrize("broken", BROKEN_GRADERS)
def test_a_broken_grader_ends_the_run_before_any_model_call_in_one_line(
    broken: str, small_data_dir: Path, tmp_path: Path
) -> None:
    """As a dead SIUO_JUDGE_* judge: the grader is checked while Inspect builds the task; a
    closed port, a 404, a wrong key or a reply with no verdict ends `inspect eval` with exit 1,
    one line naming the grader, no traceback, and the model under test never called."""
    server_args, said = BROKEN_GRADERS[broken]
    with ExitStack() as stack:
        model = stack.enter_context(ModelServer(sampled=False))
        judge = stack.enter_context(JudgeServer(**server_args)) if server_args is not None else None
        base_url = judge.base_url if judge is not None else f"http://127.0.0.1:{_closed_port()}/v1"
        env = {**_env(small_data_dir, model, tmp_path / "logs"), "GRADE_BASE_URL": base_url, "GRADE_API_KEY": SECRET}
        proc = _inspect(env, "--model-role", f"grader=openai-api/grade/{GRADER}")
        prompts = sum(model.prompts.values())
        calls = len(judge.bodies) if judge is not None else 0
    port = base_url.rsplit(":", 1)[1].split("/")[0]
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert lines[0] == f"siuo-task: checking the judge {GRADER} at {base_url} before generating ..."
    assert len(lines) == 2 and lines[1].startswith("siuo-task: ") and said.format(port=port) in lines[1], lines
    assert prompts == 0 and calls <= 1  # the model was never asked; the grader once, by the check
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").iterdir())
    assert SECRET not in proc.stdout + proc.stderr
