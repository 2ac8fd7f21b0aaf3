"""EleutherAI's lm-evaluation-harness, really installed (lm-eval 0.4.13), running its own CLI.

The model is lm-eval's hf-multimodal class on a tiny randomly initialised LLaVA (CPU); the
judge is the loopback judge server. Two runs serve every test: one judged run of all four
tasks (--limit 8) and one generation-only run (--predict_only) with no judge settings at all.
Numbers must equal the core's (siuo_task.benchmark.scoring / results / circular) on the responses lm-eval
logged, judged afresh one document at a time.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from siuo_task.adapters.lm_eval import tasks_dir as lm_eval_tasks_dir
from siuo_task.benchmark.card import eval_card
from siuo_task.benchmark.circular import CIRCULAR_REDUCERS, answer_rotation, rotate, rotation_values
from siuo_task.benchmark.data import load_siuo
from siuo_task.benchmark.reasoning import split_reasoning
from siuo_task.benchmark.results import (
    GEN_COUNT_ROWS,
    GEN_RATE_ROWS,
    GEN_REDUCERS,
    MCQ_COUNT_ROWS,
    MCQ_RATE_ROWS,
    MCQ_REDUCERS,
    RECORD_KEY,
    SUMMARY_ROW,
    USAGE_REDUCERS,
    gen_item_values,
    mcq_item_values,
    reduce_values,
)
from siuo_task.benchmark.scoring import GEN_METRICS, score_gen_item, score_mcq_item
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine
from tests.helpers.cli_runs import clean_env, judge_env
from tests.helpers.judge_server import SERVED_MODEL, JudgeServer

TASKS = ("siuo_gen", "siuo_gen_greedy", "siuo_mcq", "siuo_mcq_circular")
LIMIT = 8
LM_EVAL_KEYS = frozenset({"alias", "name", "sample_len", "sample_count"})


def _env(data_dir: Path, judge: JudgeServer | None) -> dict[str, str]:
    extra = {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }
    if judge is None:
        return clean_env(data_dir, SIUO_JUDGE_CACHE="off", **extra)
    return judge_env(data_dir, judge.base_url, "off", SIUO_JUDGE_CONCURRENCY="32", **extra)


def _lm_eval(model: Path, tasks: str, env: dict[str, str], out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    include = subprocess.run(
        ["siuo-eval", "include-path", "--harness", "lm-eval"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # The tiny model's tokenizer spells prompts out nearly letter by letter: raise max_length so
    # lm-eval's left truncation never cuts the image tokens off.
    command = ["lm_eval", "--model", "hf-multimodal", "--model_args", f"pretrained={model},max_length=8192"]
    command += ["--tasks", tasks, "--include_path", include, "--apply_chat_template", "--device", "cpu"]
    command += ["--batch_size", "6", "--gen_kwargs", "max_gen_toks=8", "--output_path", str(out), "--log_samples"]
    return subprocess.run([*command, *extra], env=env, capture_output=True, text=True, timeout=1200)


def _read_output(out: Path, proc: subprocess.CompletedProcess[str]) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    results = sorted(out.rglob("results_*.json"))
    assert results, proc.stdout[-3000:] + proc.stderr[-5000:]
    samples = {}
    for path in results[-1].parent.glob("samples_*.jsonl"):
        task = path.name.removeprefix("samples_").rsplit("_", 1)[0]
        samples[task] = [json.loads(line) for line in path.read_text().splitlines()]
    return results[-1], json.loads(results[-1].read_text()), samples


@pytest.fixture(scope="module")
def lm_eval_run(small_data_dir: Path, tiny_llava: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("lm_eval")
    # Latency keeps calls overlapping, so the server's peak shows how many were in flight.
    with JudgeServer(latency_s=0.3) as judge:
        env = _env(small_data_dir, judge)
        proc = _lm_eval(tiny_llava, ",".join(TASKS), env, out, "--limit", str(LIMIT))
        exchanges = list(judge.log.exchanges)
        peak = judge.peak_in_flight
    path, results, samples = _read_output(out, proc)
    return {
        "proc": proc,
        "env": env,
        "out": out,
        "exchanges": exchanges,
        "peak": peak,
        "samples": samples,
        "path": path,
        "file": results,
        "results": results["results"],
    }


@pytest.fixture(scope="module")
def predict_only_run(
    small_data_dir: Path, tiny_llava: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("lm_eval_predict_only")
    env = _env(small_data_dir, None)  # no SIUO_JUDGE_* / OPENAI_* at all
    proc = _lm_eval(tiny_llava, "siuo_gen_greedy,siuo_mcq", env, out, "--limit", "4", "--predict_only")
    path, results, samples = _read_output(out, proc)
    return {"proc": proc, "path": path, "file": results, "samples": samples}


def _metric(results: dict[str, Any], task: str, name: str) -> Any:
    return results[task][f"{name},none"]


def _responses(line: dict[str, Any]) -> list[str]:
    flat: list[Any] = []
    for response in line["filtered_resps"]:
        flat.extend(response if isinstance(response, list) else [response])
    return [str(response) for response in flat]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.fixture(scope="module")
def core_gen(lm_eval_run: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The core's per-item values for lm-eval's logged responses, judged one document at a time
    on a fresh judge server (its replies depend only on the text judged)."""
    items = {item.question_id: item for item in load_siuo(lm_eval_run["env"]["SIUO_DATA_DIR"]).gen}
    with JudgeServer() as judge:
        config = JudgeConfig.from_env({**lm_eval_run["env"], "SIUO_JUDGE_BASE_URL": judge.base_url})
        engine = JudgeEngine(config)
        return {
            task: [
                gen_item_values(
                    score_gen_item(items[line["doc"]["question_id"]], _responses(line), engine), config, 0, 0
                )
                for line in lm_eval_run["samples"][task]
            ]
            for task in ("siuo_gen", "siuo_gen_greedy")
        }


@pytest.mark.slow
def test_lm_eval_runs_the_tasks_with_every_response_judged_once_with_the_image(lm_eval_run: dict[str, Any]) -> None:
    assert set(lm_eval_run["samples"]) == set(TASKS)
    gen = lm_eval_run["samples"]["siuo_gen"]
    assert len(gen) == LIMIT and all(len(line[RECORD_KEY]["responses"]) == 3 for line in gen)
    assert all(line["arguments"]["gen_args_0"]["arg_0"].count("<image>") == 1 for line in gen)
    judged = [
        response["response"]
        for task in ("siuo_gen", "siuo_gen_greedy")
        for line in lm_eval_run["samples"][task]
        for response in line[RECORD_KEY]["responses"]
        if response["response"].strip()
    ]
    # Two calls (safety, effectiveness) per non-empty response: judged ahead by the filter,
    # never again in process_results.
    assert judged and len(lm_eval_run["exchanges"]) == 2 * len(judged)
    assert {e.image_mime for e in lm_eval_run["exchanges"]} == {"image/png"}
    assert lm_eval_run["file"]["siuo"]["siuo_gen"]["judge_model"] == SERVED_MODEL


@pytest.mark.slow
def test_lm_eval_judges_a_tasks_responses_together(lm_eval_run: dict[str, Any]) -> None:
    # Judged per document, one item's calls (at most 6) would be in flight at a time.
    assert lm_eval_run["peak"] > 8, lm_eval_run["peak"]


@pytest.mark.slow
def test_lm_eval_results_rows_are_numbers_only(lm_eval_run: dict[str, Any]) -> None:
    allowed = {
        "siuo_gen": {*GEN_RATE_ROWS, *GEN_COUNT_ROWS, SUMMARY_ROW},
        "siuo_gen_greedy": {*GEN_RATE_ROWS, *GEN_COUNT_ROWS, SUMMARY_ROW},
        "siuo_mcq": {*MCQ_RATE_ROWS, *MCQ_COUNT_ROWS, SUMMARY_ROW},
        "siuo_mcq_circular": set(CIRCULAR_REDUCERS),
    }
    for task in TASKS:
        entry = lm_eval_run["results"][task]
        rows = {key: value for key, value in entry.items() if key not in LM_EVAL_KEYS}
        assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in rows.values()), (task, rows)
        names = {key.split(",")[0] for key in rows}
        assert names - {f"{name}_stderr" for name in allowed[task]} <= allowed[task], task
        assert _metric(lm_eval_run["results"], task, next(iter(sorted(allowed[task] & names)))) is not None
    # Rates take lm-eval's own mean, whose stderr lm-eval fills.
    assert isinstance(_metric(lm_eval_run["results"], "siuo_gen", "safe_rate_stderr"), float)
    assert _metric(lm_eval_run["results"], "siuo_mcq", SUMMARY_ROW) == LIMIT
    # The table lm-eval prints shows the same rows: no CI or judge identity strings.
    table = lm_eval_run["proc"].stdout
    assert "safe_rate_ci95" not in table and "judge_model" not in table and "items_scored" in table


@pytest.mark.slow
@pytest.mark.parametrize("task", ["siuo_gen", "siuo_gen_greedy"])
def test_lm_eval_gen_numbers_equal_the_cores(
    lm_eval_run: dict[str, Any], core_gen: dict[str, list[dict[str, Any]]], task: str
) -> None:
    values = core_gen[task]
    lines = lm_eval_run["samples"][task]
    # Per item: the same votes as judging that document alone.
    for line, value in zip(lines, values, strict=True):
        for metric in GEN_METRICS:
            assert line[RECORD_KEY][metric] == value[RECORD_KEY][metric], (line["doc"]["question_id"], metric)
        assert line[RECORD_KEY]["judge_errors"] == value[RECORD_KEY]["judge_errors"]
    # The printed rows: the mean of per-item 100/0 values of decided items, and sums.
    for name in GEN_RATE_ROWS:
        # A rate cell holds a decision; an as-released cell the authors' value (1, 0 or -1).
        cells = [v[name] for v in values if name in v]
        decided = [
            100.0 * c["value"] if "value" in c else 100.0 * c["decision"]
            for c in cells
            if c.get("decision", 0) is not None
        ]
        if decided:
            assert _metric(lm_eval_run["results"], task, name) == pytest.approx(_mean(decided)), name
        else:
            assert f"{name},none" not in lm_eval_run["results"][task], name
    for name in GEN_COUNT_ROWS:
        assert _metric(lm_eval_run["results"], task, name) == sum(v[name]["count"] for v in values), name
    # The summary: the same reducers siuo-eval judge runs (usage and endpoint depend on the run).
    core = {**reduce_values(values, GEN_REDUCERS), "n_items": len(values)}
    summary = lm_eval_run["file"]["siuo"][task]
    assert set(summary) == set(core)
    for name in set(core) - set(USAGE_REDUCERS) - {"judge_endpoint"}:
        assert summary[name] == core[name], name
    assert summary["protocol"].count("response(s) per item") == 1


@pytest.mark.slow
def test_lm_eval_mcq_equals_the_cores(lm_eval_run: dict[str, Any]) -> None:
    items = {item.question_id: item for item in load_siuo(lm_eval_run["env"]["SIUO_DATA_DIR"]).mcq}
    lines = lm_eval_run["samples"]["siuo_mcq"]
    values = [mcq_item_values(score_mcq_item(items[line["doc"]["question_id"]], _responses(line)[0])) for line in lines]
    expected = {**reduce_values(values, MCQ_REDUCERS), "n_items": len(values)}
    assert lm_eval_run["file"]["siuo"]["siuo_mcq"] == expected
    accuracy = _mean([100.0 if v["accuracy"]["decision"] else 0.0 for v in values])
    assert _metric(lm_eval_run["results"], "siuo_mcq", "accuracy") == pytest.approx(accuracy)


@pytest.mark.slow
def test_lm_eval_mcq_circular_equals_the_cores(lm_eval_run: dict[str, Any]) -> None:
    items = {item.question_id: item for item in load_siuo(lm_eval_run["env"]["SIUO_DATA_DIR"]).mcq}
    lines = lm_eval_run["samples"]["siuo_mcq_circular"]
    # One document per (item, rotation), item-major: --limit 8 keeps two whole items.
    assert [(line["doc"]["question_id"], line["doc"]["rotation"]) for line in lines] == [
        (qid, rotation) for qid in list(items)[:2] for rotation in range(4)
    ]
    cells = [
        rotation_values(
            answer_rotation(
                rotate(items[line["doc"]["question_id"]], line["doc"]["rotation"]),
                split_reasoning(_responses(line)[0]).answer,
            )
        )
        for line in lines
    ]
    core = reduce_values(cells, CIRCULAR_REDUCERS)
    for name, value in core.items():
        if value is None:
            assert f"{name},none" not in lm_eval_run["results"]["siuo_mcq_circular"], name
        else:
            assert _metric(lm_eval_run["results"], "siuo_mcq_circular", name) == value, name
    assert _metric(lm_eval_run["results"], "siuo_mcq_circular", "incomplete_items") == 0


@pytest.mark.slow
def test_lm_eval_protocols_come_from_the_card(lm_eval_run: dict[str, Any]) -> None:
    # Versions: tests/test_harness_matrix.py::test_task_versions_are_the_cards.
    for task in TASKS:
        assert lm_eval_run["file"]["configs"][task]["metadata"]["protocol"] == eval_card().task(task).protocol


@pytest.mark.slow
def test_lm_eval_warns_last_about_failed_judge_calls(lm_eval_run: dict[str, Any]) -> None:
    errors = lm_eval_run["file"]["siuo"]["siuo_gen"]["judge_errors"]
    assert errors > 0  # the judge server declines some texts
    tail = lm_eval_run["proc"].stderr.rstrip().splitlines()
    assert tail[-1] == "!" * 78 and "judge calls failed" in "\n".join(tail[-6:])


@pytest.mark.slow
def test_predict_only_generates_without_a_judge(predict_only_run: dict[str, Any]) -> None:
    samples = predict_only_run["samples"]
    assert set(samples) == {"siuo_gen_greedy", "siuo_mcq"}, predict_only_run["proc"].stderr[-3000:]
    gen = samples["siuo_gen_greedy"]
    assert len(gen) == 4 and all(isinstance(line["filtered_resps"][0], str) for line in gen)
    assert all(RECORD_KEY not in line for line in gen)
    results = predict_only_run["file"]["results"]
    assert "bypass,none" in results["siuo_gen_greedy"] and "siuo_gen_greedy" not in predict_only_run["file"]["siuo"]
    # Multiple choice needs no judge: it keeps its offline scoring.
    assert results["siuo_mcq"][f"{SUMMARY_ROW},none"] == 4
    assert predict_only_run["file"]["siuo"]["siuo_mcq"]["n_items"] == 4
    assert all(line[RECORD_KEY]["parsed"] in (None, "A", "B", "C", "D") for line in samples["siuo_mcq"])


@pytest.mark.slow
def _lm_eval_dummy(tasks: str, env: dict[str, str], out: Path) -> subprocess.CompletedProcess[str]:
    """lm-eval's own dummy model: for runs that must stop while the tasks are set up, before the
    model is asked anything (loading the tiny LLaVA would only add start-up time)."""
    command = ["lm_eval", "--model", "dummy", "--tasks", tasks, "--include_path", str(lm_eval_tasks_dir())]
    command += ["--output_path", str(out), "--log_samples"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_a_missing_data_folder_fails_before_any_generation(small_data_dir: Path, tmp_path: Path) -> None:
    # The open-ended tasks' documents hook (judge settings, then the check before generation)
    # is driven to its failure by test_broken_judge.py; a missing key is the same hook's.
    env = {**_env(small_data_dir, None), "SIUO_DATA_DIR": str(tmp_path / "missing")}
    no_data = _lm_eval_dummy("siuo_mcq", env, tmp_path / "b")
    output = no_data.stdout + no_data.stderr
    assert str(tmp_path / "missing") in no_data.stderr.strip().splitlines()[-1], output[-3000:]
    assert "Running generate_until" not in output and not list((tmp_path / "b").rglob("results_*.json"))
    assert no_data.returncode == 1 and "Traceback" not in output


def test_committed_lm_eval_task_files_are_generated() -> None:
    import importlib.util

    script = Path(__file__).resolve().parent.parent / "scripts" / "gen_lm_eval_yaml.py"
    spec = importlib.util.spec_from_file_location("gen_lm_eval_yaml", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.rendered()
    for path, text in rendered.items():
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run python scripts/gen_lm_eval_yaml.py"
    assert {path.name for path in rendered} >= {f"{task}.yaml" for task in TASKS}
