"""EleutherAI's lm-evaluation-harness, really installed (lm-eval), running its own CLI.

The model is lm-eval's hf-multimodal class on a tiny randomly initialised LLaVA (CPU); the
judge is the loopback judge server. Numbers must equal the core's (the lmms-eval hooks and
reductions) on the responses lm-eval logged.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from siuo_task.adapters.lm_eval import tasks_dir
from siuo_task.adapters.lmms_eval import hooks
from siuo_task.results import GEN_REDUCERS, MCQ_REDUCERS, SUMMARY_ROW, reduce_values
from siuo_task.scoring import score_mcq_item
from tests.helpers.judge_server import SERVED_MODEL, JudgeServer

SECRET = "sk-lm-eval-judge-secret-0123456789"
TASKS = "siuo_gen,siuo_gen_greedy,siuo_mcq"


def _env(data_dir: Path, judge: JudgeServer | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIUO_", "OPENAI_"))}
    env.update(SIUO_DATA_DIR=str(data_dir), SIUO_JUDGE_CACHE="off", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.update(TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    if judge is not None:
        env.update(SIUO_JUDGE_BASE_URL=judge.base_url, SIUO_JUDGE_API_KEY=SECRET)
    return env


def _lm_eval(model: Path, tasks: str, env: dict[str, str], out: Path) -> subprocess.CompletedProcess[str]:
    include = subprocess.run(
        ["siuo-eval", "include-path", "--harness", "lm-eval"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # The tiny model's tokenizer spells prompts out nearly letter by letter: raise max_length so
    # lm-eval's left truncation never cuts the image tokens off.
    command = ["lm_eval", "--model", "hf-multimodal", "--model_args", f"pretrained={model},max_length=8192"]
    command += ["--tasks", tasks, "--include_path", include, "--apply_chat_template", "--device", "cpu"]
    command += ["--batch_size", "6", "--gen_kwargs", "max_gen_toks=8", "--output_path", str(out), "--log_samples"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def lm_eval_run(small_data_dir: Path, tiny_llava: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("lm_eval")
    with JudgeServer() as judge:
        env = _env(small_data_dir, judge)
        proc = _lm_eval(tiny_llava, TASKS, env, out)
        exchanges = list(judge.log.exchanges)
    results = sorted(out.rglob("results_*.json"))
    assert results, proc.stdout[-3000:] + proc.stderr[-5000:]
    samples = {}
    for path in out.rglob("samples_*.jsonl"):
        task = path.name.removeprefix("samples_").rsplit("_", 1)[0]
        samples[task] = [json.loads(line) for line in path.read_text().splitlines()]
    return {
        "proc": proc,
        "env": env,
        "out": out,
        "exchanges": exchanges,
        "samples": samples,
        "results": json.loads(results[-1].read_text())["results"],
    }


def _metric(results: dict[str, Any], task: str, name: str) -> Any:
    return results[task][f"{name},none"]


@pytest.mark.slow
def test_lm_eval_runs_the_tasks_with_every_response_judged_with_the_image(lm_eval_run: dict[str, Any]) -> None:
    assert set(lm_eval_run["samples"]) == {"siuo_gen", "siuo_gen_greedy", "siuo_mcq"}
    gen = lm_eval_run["samples"]["siuo_gen"]
    assert len(gen) == 18 and all(len(line["siuo"]["responses"]) == 3 for line in gen)
    assert all(line["arguments"]["gen_args_0"]["arg_0"].count("<image>") == 1 for line in gen)
    non_empty = sum(
        1
        for task in ("siuo_gen", "siuo_gen_greedy")
        for line in lm_eval_run["samples"][task]
        for response in line["siuo"]["responses"]
        if response["response"].strip()
    )
    assert non_empty > 0 and len(lm_eval_run["exchanges"]) == 2 * non_empty
    assert {e.image_mime for e in lm_eval_run["exchanges"]} == {"image/png"}
    assert _metric(lm_eval_run["results"], "siuo_gen", "judge_model") == SERVED_MODEL


@pytest.mark.slow
@pytest.mark.parametrize("task", ["siuo_gen", "siuo_gen_greedy"])
def test_lm_eval_numbers_equal_the_cores(lm_eval_run: dict[str, Any], task: str) -> None:
    os.environ.update({k: v for k, v in lm_eval_run["env"].items() if k.startswith("SIUO_")})
    try:
        with JudgeServer() as judge:
            os.environ["SIUO_JUDGE_BASE_URL"] = judge.base_url
            docs = {doc["question_id"]: doc for doc in hooks.process_docs_gen(None)}
            values = [
                hooks.process_results_gen(docs[line["doc"]["question_id"]], line["filtered_resps"])
                for line in lm_eval_run["samples"][task]
            ]
    finally:
        for key in [k for k in os.environ if k.startswith("SIUO_")]:
            del os.environ[key]
    # The lmms-eval hooks' full per-item values ride under SUMMARY_ROW.
    core = reduce_values([value[SUMMARY_ROW] for value in values], GEN_REDUCERS)
    # trace_safe_rate exists only when traces are judged (SIUO_JUDGE_TRACES=1), not here.
    compared = [n for n in GEN_REDUCERS if ("rate" in n or n in ("judge_errors", "items_undecided"))]
    compared = [n for n in compared if not n.startswith("trace_safe")]
    for name in compared:
        assert _metric(lm_eval_run["results"], task, name) == core.get(name), name


@pytest.mark.slow
def test_lm_eval_mcq_equals_the_cores(lm_eval_run: dict[str, Any]) -> None:
    from siuo_task.data import load_siuo

    items = {item.question_id: item for item in load_siuo(lm_eval_run["env"]["SIUO_DATA_DIR"]).mcq}
    values = [
        {"accuracy": {"decision": score_mcq_item(items[line["doc"]["question_id"]], line["filtered_resps"][0]).correct}}
        for line in lm_eval_run["samples"]["siuo_mcq"]
    ]
    expected = reduce_values(values, {"accuracy": MCQ_REDUCERS["accuracy"]})["accuracy"]
    assert _metric(lm_eval_run["results"], "siuo_mcq", "accuracy") == expected


@pytest.mark.slow
def test_no_secret_in_lm_eval_outputs(lm_eval_run: dict[str, Any]) -> None:
    assert SECRET not in lm_eval_run["proc"].stdout + lm_eval_run["proc"].stderr
    for path in lm_eval_run["out"].rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path


@pytest.mark.slow
def test_bad_input_fails_before_any_generation(small_data_dir: Path, tiny_llava: Path, tmp_path: Path) -> None:
    no_key = _lm_eval(tiny_llava, "siuo_gen", _env(small_data_dir, None), tmp_path / "a")
    output = no_key.stdout + no_key.stderr
    assert "no judge API key: set SIUO_JUDGE_API_KEY" in output
    assert "Running generate_until" not in output and not list((tmp_path / "a").rglob("results_*.json"))
    env = {**_env(small_data_dir, None), "SIUO_DATA_DIR": str(tmp_path / "missing")}
    no_data = _lm_eval(tiny_llava, "siuo_mcq", env, tmp_path / "b")
    assert str(tmp_path / "missing") in no_data.stdout + no_data.stderr
    assert no_key.returncode != 0 and no_data.returncode != 0


def test_committed_lm_eval_task_files_are_generated() -> None:
    import importlib.util

    script = Path(__file__).resolve().parent.parent / "scripts" / "gen_lm_eval_yaml.py"
    spec = importlib.util.spec_from_file_location("gen_lm_eval_yaml", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for path, text in module.rendered().items():
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run python scripts/gen_lm_eval_yaml.py"
    assert (tasks_dir() / "siuo" / "siuo_gen.yaml").is_file()


@pytest.mark.slow
def test_siuo_eval_judge_reads_lm_eval_samples(lm_eval_run: dict[str, Any], tmp_path: Path) -> None:
    samples = next(lm_eval_run["out"].rglob("samples_siuo_gen_2*.jsonl"))
    with JudgeServer() as judge:
        env = {**lm_eval_run["env"], "SIUO_JUDGE_BASE_URL": judge.base_url}
        command = ["siuo-eval", "judge", str(samples), "--output", str(tmp_path / "j")]
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert (tmp_path / "j" / "results.json").is_file(), proc.stderr
    rejudged = json.loads((tmp_path / "j" / "results.json").read_text())
    for name in ("safe_rate", "effective_rate", "safe_effective_rate", "judge_errors"):
        assert rejudged[name] == _metric(lm_eval_run["results"], "siuo_gen", name), name
