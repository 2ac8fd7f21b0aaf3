"""The harness matrix: every harness x {each task, generation only then judged later, report,
in-run bound, task versions}, through each harness's real CLI, and README's "Every harness"
table checked against it.

The model under test is each harness's OpenAI-compatible API model class pointed at the loopback
model server (deterministic replies per prompt, settings and sample number; MCQ letters for MCQ
prompts); the judge is the loopback judge server. Per harness there are two runs of all four
tasks on the 18 items of ``small_data_dir``: one judged in the run (SIUO_JUDGE_CONCURRENCY=8, a
judge answering after 0.05 s), one generation only with no judge setting at all. Then
``siuo-eval judge`` scores the generation-only output and ``siuo-eval report`` reads the judged
one. A cell that does not hold for a harness is a strict xfail naming the gap.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from siuo_task.adapters.vlmevalkit.names import RUN_SUFFIX
from siuo_task.benchmark.card import CIRCULAR_TASK, GEN_HEADLINE, GEN_TASKS, MCQ_TASK, TASKS, run_name, task_version
from tests.helpers.cli_runs import judge_env, no_secret_in
from tests.helpers.harness_cli import (
    DATASET_OF_TASK,
    GEN_ONLY_FLAG,
    HARNESSES,
    MODEL,
    TASK_NAMES,
    harness_command,
    judged_offline_env,
    offline_env,
)
from tests.helpers.in_process import siuo_eval_in_process
from tests.helpers.judge_server import JudgeServer
from tests.helpers.model_server import ModelServer

pytestmark = pytest.mark.slow

BOUND = 8
README = Path(__file__).resolve().parent.parent / "README.md"

# What this matrix finds does not hold (strict xfails: each must fail until it is fixed).
GAPS: dict[tuple[str, str], str] = {}


def _gap(request: pytest.FixtureRequest, harness: str, aspect: str) -> None:
    """Mark a known gap: the test still runs, and passing (the gap closed) fails it."""
    if (harness, aspect) in GAPS:
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=f"{harness}: {GAPS[harness, aspect]}"))


def _judge_env(data_dir: Path, judge: JudgeServer) -> dict[str, str]:
    return judge_env(data_dir, judge.base_url, "off", SIUO_JUDGE_CONCURRENCY=str(BOUND))


def _harness_run(harness: str, data_dir: Path, root: Path, judge: JudgeServer, generation_only: bool) -> dict[str, Any]:
    """One run of all four tasks, with a fresh model server (so the same responses again)."""
    out = root / ("generated" if generation_only else "judged")
    calls, probes = len(judge.log.exchanges), len(judge.log.probes)
    judge.reset_peak()
    with ModelServer(per_settings=True) as model:
        if generation_only:
            env = offline_env(data_dir, root, model.base_url)
        else:
            env = judged_offline_env(data_dir, root, model.base_url, judge.base_url, SIUO_JUDGE_CONCURRENCY=str(BOUND))
        proc = subprocess.run(
            harness_command(harness, model.base_url, out, generation_only),
            env=env,
            capture_output=True,
            text=True,
            cwd=root,
            timeout=600,
        )
    return {
        "proc": proc,
        "out": out,
        "env_keys": sorted(env),
        "judge_calls": len(judge.log.exchanges) - calls,
        "probes": len(judge.log.probes) - probes,
        "peak": judge.peak_graded_in_flight,
        "model_requests": sum(model.prompts.values()),
        "empty_replies": model.empty_replies,
        "temperatures": _requests_per_temperature(model),
    }


def _requests_per_temperature(model: ModelServer) -> Counter[float | None]:
    """How many model requests were sent at each temperature (None: the harness sent none)."""
    counts: Counter[float | None] = Counter()
    for (_, temperature), requests in model.temperatures.items():
        counts[temperature] += requests
    return counts


# CI walks the matrix on 18 items; SIUO_MATRIX_ITEMS=all walks it on all 167 real items (minutes).
FULL = os.environ.get("SIUO_MATRIX_ITEMS") == "all"
ITEMS = 167 if FULL else 18


@pytest.fixture(scope="module")
def matrix_data(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue("full_data_dir" if FULL else "small_data_dir")


@pytest.fixture(scope="module", params=HARNESSES)
def matrix(request: pytest.FixtureRequest, matrix_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    harness: str = request.param
    small_data_dir = matrix_data
    root = tmp_path_factory.mktemp(harness.lower().replace("-", "_"))
    with JudgeServer(latency_s=0.05, declines=False) as judge:
        judged = _harness_run(harness, small_data_dir, root, judge, generation_only=False)
        generated = _harness_run(harness, small_data_dir, root, judge, generation_only=True)
        env = _judge_env(small_data_dir, judge)
        later = siuo_eval_in_process("judge", generated["out"], "--output", root / "judged-later", env=env)
        report = siuo_eval_in_process("report", judged["out"], "--output", root / "report", env=env)
        # A harness that writes one file per task: its circular run read on its own.
        circular_file = {"Inspect": "*_siuo-mcq-circular_*.eval", "VLMEvalKit": "*_MCQCircular_siuo_results.json"}
        alone = None
        if harness in circular_file:
            file = _one(judged["out"], circular_file[harness])
            alone = siuo_eval_in_process("report", file, "--output", root / "report-circular", env=env)
    judged["native"] = _native(harness, judged["out"])
    return {
        "harness": harness,
        "root": root,
        "judged": judged,
        "generated": generated,
        "later": later,
        "report": report,
        "circular_alone": alone,
    }


# -- each harness's own results, read without siuo_task ---------------------------------------


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.rglob(pattern))
    assert len(found) == 1, f"{pattern} under {folder}: {found}"
    return found[0]


def _native(harness: str, out: Path) -> dict[str, dict[str, Any]]:
    """Per eval-card task: its metrics (names without ',none') and '_version', the task version
    the harness recorded (None where it records none)."""
    by_task: dict[str, dict[str, Any]] = {}
    if harness in ("lmms-eval", "lm-eval"):
        path = _one(out, "*_results.json" if harness == "lmms-eval" else "results_*.json")
        results = json.loads(path.read_text())
        for task in TASKS:
            if task in results["results"]:
                metrics = {k.split(",")[0]: v for k, v in results["results"][task].items() if k.endswith(",none")}
                by_task[task] = {**metrics, "_version": results["versions"].get(task)}
    elif harness == "Inspect":
        from inspect_ai.log import read_eval_log

        for path in sorted(out.glob("*.eval")):
            log = read_eval_log(str(path))
            task = log.eval.task.removeprefix("siuo_task/")
            metrics = {
                n: m.value for score in (log.results.scores if log.results else []) for n, m in score.metrics.items()
            }
            by_task[task] = {**metrics, "_version": log.eval.task_version}
    else:
        for task in TASKS:
            found = sorted(out.rglob(f"*_{DATASET_OF_TASK[task]}_siuo_results.json"))
            if found:
                results = json.loads(found[-1].read_text())
                by_task[task] = {**results, "_version": results.get("version", results.get("task_version"))}
    return by_task


def _headline(task: str) -> tuple[str, ...]:
    if task in GEN_TASKS:
        return (*GEN_HEADLINE, "judge_errors")
    return ("accuracy",) if task == MCQ_TASK else ("circular_accuracy",)


def _run_name(harness: str, task: str) -> str:
    """The one naming rule: the model as recorded plus the card's suffix (VLMEvalKit names its
    one-response dataset itself: -GEN1)."""
    if harness == "VLMEvalKit":
        return MODEL + RUN_SUFFIX[DATASET_OF_TASK[task]]
    return run_name(MODEL, task)


def _ok(run: dict[str, Any]) -> str:
    proc = run["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stderr


# -- the cells ---------------------------------------------------------------------------------


def test_every_task_runs_judged_in_the_run(matrix: dict[str, Any]) -> None:
    _ok(matrix["judged"])
    native = matrix["judged"]["native"]
    assert set(native) == set(TASKS), matrix["judged"]["proc"].stderr[-3000:]
    for task in TASKS:
        for metric in _headline(task):
            value = native[task].get(metric)
            assert isinstance(value, int | float) and value == value, (task, metric, value)
    for task in GEN_TASKS:
        assert native[task]["judge_errors"] == 0
    # Every item's responses were generated: 3 + 1 + 1 + 4 per item.
    assert matrix["judged"]["model_requests"] == _expected_requests(matrix["harness"], matrix["judged"])


def _expected_requests(harness: str, run: dict[str, Any]) -> int:
    """3 + 1 + 1 + 4 requests per item; VLMEvalKit's API class asks again after an empty reply."""
    return ITEMS * (3 + 1 + 1 + 4) + (run["empty_replies"] if harness == "VLMEvalKit" else 0)


def test_generation_only_needs_no_judge(matrix: dict[str, Any]) -> None:
    run = matrix["generated"]
    _ok(run)
    assert not [k for k in run["env_keys"] if k.startswith(("SIUO_JUDGE_", "OPENAI_"))]
    assert run["judge_calls"] == 0 and run["probes"] == 0
    assert run["model_requests"] == _expected_requests(matrix["harness"], run)


def test_judged_later_gives_the_in_run_numbers(matrix: dict[str, Any]) -> None:
    harness, later = matrix["harness"], matrix["later"]
    assert later.returncode == 0, later.stdout[-2000:] + later.stderr[-3000:]
    native = matrix["judged"]["native"]
    for task in GEN_TASKS:
        results = json.loads((matrix["root"] / "judged-later" / _run_name(harness, task) / "results.json").read_text())
        assert results["n_items"] == ITEMS
        compared = (*GEN_HEADLINE, "judge_errors")
        assert {m: results[m] for m in compared} == {m: _round(native[task][m]) for m in compared}, task


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


_READ = re.compile(r"^read (?P<name>\S+).* \((?P<harness>[^(),]+), model (?P<model>[^()]+)\): (?P<files>.+)$")


def _report_rows(markdown: str) -> dict[str, dict[str, str]]:
    """The report's headline table: run name -> column -> cell."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Model | Items | Responses/item"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0].split(" ")[0]] = dict(zip(header, cells, strict=True))
    return rows


def test_report_names_every_run_with_the_results_numbers(matrix: dict[str, Any]) -> None:
    harness, report = matrix["harness"], matrix["report"]
    assert report.returncode == 0, report.stdout[-2000:] + report.stderr[-3000:]
    read = [m.groupdict() for m in map(_READ.match, report.stdout.splitlines()) if m]
    main, single = _run_name(harness, "siuo_gen"), _run_name(harness, "siuo_gen_greedy")
    assert {row["name"] for row in read} == {main, single}, report.stdout
    assert {(row["harness"], row["model"]) for row in read} == {(harness, MODEL)}
    # The multiple-choice parts, circular included, join the model's paper-protocol run.
    files = next(row["files"] for row in read if row["name"] == main)
    circular_file = (
        "MCQCircular" if harness == "VLMEvalKit" else ("siuo-mcq-circular" if harness == "Inspect" else CIRCULAR_TASK)
    )
    assert circular_file in files, files
    native = matrix["judged"]["native"]
    rows = _report_rows((matrix["root"] / "report" / "report.md").read_text())
    columns = {"safe_rate": "Safe", "effective_rate": "Effective", "safe_effective_rate": "Safe & Effective"}
    for name, task in ((main, "siuo_gen"), (single, "siuo_gen_greedy")):
        for metric, column in columns.items():
            assert rows[name][column].split(" ")[0] == f"{native[task][metric]:.1f}", (name, metric)
    assert rows[main]["MCQ accuracy"].split(" ")[0] == f"{native[MCQ_TASK]['accuracy']:.1f}"
    assert rows[main]["MCQ circular accuracy"].split(" ")[0] == f"{native[CIRCULAR_TASK]['circular_accuracy']:.1f}"


def test_a_circular_run_alone_is_named_circular(matrix: dict[str, Any]) -> None:
    alone = matrix["circular_alone"]
    if alone is None:
        pytest.skip(f"{matrix['harness']} writes every task's results into one file")
    assert alone.returncode == 0, alone.stdout[-2000:] + alone.stderr[-3000:]
    read = [m.groupdict() for m in map(_READ.match, alone.stdout.splitlines()) if m]
    assert [row["name"] for row in read] == [_run_name(matrix["harness"], CIRCULAR_TASK)] == [f"{MODEL}-circular"]


def test_in_run_judging_reaches_the_bound(matrix: dict[str, Any]) -> None:
    run = matrix["judged"]
    _ok(run)
    # ITEMS x (3 + 1) responses, 2 calls each (empty responses are not sent to the judge).
    assert ITEMS * 5.5 <= run["judge_calls"] <= ITEMS * 8
    assert 6 <= run["peak"] <= BOUND, run["peak"]


def test_the_paper_protocol_is_sampled_and_the_rest_greedy(matrix: dict[str, Any]) -> None:
    """siuo_gen's 3 responses per item are asked at temperature 1.0 (VLMEvalKit's API class too,
    with no --temperature given), every other request greedily, in both runs."""
    for run in (matrix["judged"], matrix["generated"]):
        temperatures = run["temperatures"]
        sampled = {t: n for t, n in temperatures.items() if t}
        # VLMEvalKit's API class asks again, at the same temperature, after an empty reply.
        retried = run["empty_replies"] if matrix["harness"] == "VLMEvalKit" else 0
        assert set(sampled) == {1.0} and ITEMS * 3 <= sampled[1.0] <= ITEMS * 3 + retried, temperatures
    if matrix["harness"] == "VLMEvalKit":
        assert f"{DATASET_OF_TASK['siuo_gen']} asks API models at temperature 1.0" in matrix["generated"]["proc"].stderr
        # Its predictions, judged later: read by file name, with no note on VLMEvalKit's own run record.
        assert "named by VLMEvalKit file name" in matrix["later"].stderr
        assert "status.json" not in matrix["later"].stdout + matrix["later"].stderr


def test_the_judge_is_checked_once_before_generating(matrix: dict[str, Any], request: pytest.FixtureRequest) -> None:
    _gap(request, matrix["harness"], "one probe")
    assert matrix["judged"]["probes"] == 1


def test_no_secret_in_any_output(matrix: dict[str, Any]) -> None:
    """The judge key reaches no file the harness or siuo-eval wrote, nor what either printed."""
    procs = [matrix["judged"]["proc"], matrix["generated"]["proc"], matrix["later"], matrix["report"]]
    assert "SIUO_JUDGE_API_KEY" in matrix["judged"]["env_keys"]
    no_secret_in(matrix["root"], *(proc.stdout + proc.stderr for proc in procs))


def test_task_versions_are_the_cards(matrix: dict[str, Any], request: pytest.FixtureRequest) -> None:
    _gap(request, matrix["harness"], "versions")
    native = matrix["judged"]["native"]
    assert {task: str(native[task]["_version"]) for task in TASKS} == {task: task_version(task) for task in TASKS}


# -- README's table ------------------------------------------------------------------------


def _readme_table() -> dict[str, dict[str, str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Every harness: which extra, which command", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return {
        cells[0]: dict(zip(header, cells, strict=True))
        for cells in ([cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:])
    }


def test_readme_table_agrees_with_the_matrix() -> None:
    table = _readme_table()
    assert list(table) == list(HARNESSES)
    for harness, row in table.items():
        assert re.findall(r"`([^`]+)`", row["tasks"]) == [TASK_NAMES[harness][task] for task in TASKS], harness
        assert re.findall(r"`([^`]+)`", row["generation only"])[:1] == [GEN_ONLY_FLAG[harness]], harness
