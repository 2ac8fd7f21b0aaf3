"""Each harness's command line for our tasks, as its users type it, and the offline environment
it runs in: the model under test is that harness's OpenAI-compatible API model class pointed at a
loopback model server (tests/helpers/model_server.py).

Used by every test that runs a harness against the loopback model server, and by
``scripts/check_install.py`` (a fresh install's smoke run), so all launch each harness the same
way. (The runs of lmms-eval's and lm-eval's local model classes, the tiny LLaVA and lmms-eval's
``dummy``, and Inspect's run of several models at once spell out their own command lines.)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from siuo_task.adapters.lm_eval import tasks_dir as lm_eval_tasks
from siuo_task.adapters.vlmevalkit.names import TASK_OF_DATASET
from siuo_task.benchmark.card import TASKS
from tests.helpers.cli_runs import judge_env

MODEL = "test-model"
HARNESSES = ("lmms-eval", "VLMEvalKit", "Inspect", "lm-eval")

# The name each harness runs each eval-card task under.
DATASET_OF_TASK = {task: dataset for dataset, task in TASK_OF_DATASET.items() if dataset.startswith("SafeInputs")}
TASK_NAMES: dict[str, dict[str, str]] = {
    "lmms-eval": {task: task for task in TASKS},
    "VLMEvalKit": {task: DATASET_OF_TASK[task] for task in TASKS},
    "Inspect": {task: f"siuo_task/{task}" for task in TASKS},
    "lm-eval": {task: task for task in TASKS},
}
# The flag that makes a run generation only (no judge, no key, no network but the model's).
GEN_ONLY_FLAG = {
    "lmms-eval": "--predict_only",
    "VLMEvalKit": "--mode infer",
    "Inspect": "--no-score",
    "lm-eval": "--predict_only",
}


def hubs_offline(hf_home: Path | None = None) -> dict[str, str]:
    """The variables that keep Hugging Face's hub and datasets libraries from the network (tests
    have none), with their cache in ``hf_home`` (None: wherever the environment puts it)."""
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if hf_home is not None:
        env["HF_HOME"] = str(hf_home)
    return env


def offline_env(data_dir: Path, root: Path, model_base_url: str) -> dict[str, str]:
    """This process's environment with no judge, OpenAI or Inspect setting, the SIUO data in
    ``data_dir``, every hub offline and each harness's caches under ``root``; the harnesses'
    API model classes reach the model server through LOOP_* (Inspect's ``openai-api/loop``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIUO_", "OPENAI_", "INSPECT_"))}
    env.update(SIUO_DATA_DIR=str(data_dir), **hubs_offline(root / "hf"))
    env.update(LMUData=str(root / "lmu"), LOOP_API_KEY="model-key", LOOP_BASE_URL=model_base_url)
    env.update(INSPECT_DISPLAY="plain")
    return env


def judged_offline_env(
    data_dir: Path, root: Path, model_base_url: str, judge_url: str, cache: Path | str = "off", **extra: str
) -> dict[str, str]:
    """``offline_env`` with the judge at ``judge_url`` as ``cli_runs.judge_env`` sets it (the test
    key, the cache ``cache`` or "off", short waits); ``extra`` adds or overrides variables."""
    env = offline_env(data_dir, root, model_base_url)
    env.update({k: v for k, v in judge_env(data_dir, judge_url, cache).items() if k.startswith("SIUO_")})
    env.update(extra)
    return env


def harness_command(
    harness: str,
    model_base_url: str,
    out: Path,
    generation_only: bool,
    tasks: Sequence[str] = TASKS,
    python: str = sys.executable,
    api_nproc: int = 16,
    extra: Sequence[str] = (),
    model: str = MODEL,
) -> list[str]:
    """The command that runs eval-card ``tasks`` in ``harness`` with ``python``'s environment on
    the model server's ``model``, writing under ``out``; ``api_nproc`` is VLMEvalKit's count of
    parallel model requests, and ``extra`` is appended as typed (the harness's own further options)."""
    names = [TASK_NAMES[harness][task] for task in tasks]
    options = [*(GEN_ONLY_FLAG[harness].split() if generation_only else []), *extra]
    if harness == "Inspect":
        inspect = str(Path(python).parent / "inspect")
        return [inspect, "eval", *names, "--model", f"openai-api/loop/{model}", "--log-dir", str(out), *options]
    if harness == "VLMEvalKit":
        return [python, "-m", "siuo_task.vlmeval", "--model", model, "--base-url", model_base_url,
                "--data", *names, "--work-dir", str(out), "--api-nproc", str(api_nproc), *options]  # fmt: skip
    if harness == "lmms-eval":
        args = f"model={model},base_url={model_base_url},api_key=EMPTY"
        return [python, "-m", "lmms_eval", "--model", "openai", "--model_args", args,
                "--tasks", ",".join(names), "--output_path", str(out), "--log_samples", *options]  # fmt: skip
    args = f"model={model},base_url={model_base_url}/chat/completions,tokenizer_backend=None"
    return [python, "-m", "lm_eval", "--model", "local-chat-completions", "--model_args", args,
            "--tasks", ",".join(names), "--include_path", str(lm_eval_tasks()), "--apply_chat_template",
            "--output_path", str(out), "--log_samples", *options]  # fmt: skip
