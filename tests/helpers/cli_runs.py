"""Running ``siuo-eval`` as a user would (a subprocess with its own environment), for CLI tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers.fixture_data import per_category, real_items

# The judge API key every test sends: each test that runs a command checks it appears in no output.
SECRET = "sk-test-judge-secret-abcdef0123456789"


def clean_env(data_dir: Path | None, *drop: str, **extra: str) -> dict[str, str]:
    """This process's environment without any judge or OpenAI setting (nor variables starting
    with ``drop``), reading the SIUO data in ``data_dir`` (None: no data setting); ``extra``
    adds variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIUO_", "OPENAI_", *drop))}
    if data_dir is not None:
        env["SIUO_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def judge_env(data_dir: Path, base_url: str, cache: Path | str, **extra: str) -> dict[str, str]:
    """``clean_env`` plus a judge at ``base_url`` with the test key, its cache (a path or "off")
    and short retry / batch poll waits; ``extra`` adds or overrides variables."""
    env = clean_env(data_dir)
    env.update(SIUO_JUDGE_BASE_URL=base_url, SIUO_JUDGE_API_KEY=SECRET)
    env.update(SIUO_JUDGE_CACHE=str(cache), SIUO_JUDGE_BACKOFF="0.05", SIUO_JUDGE_BATCH_POLL="0.05")
    env.update(extra)
    return env


def no_secret_in(folder: Path, *texts: str) -> None:
    """The test key appears in no file under ``folder`` and in none of ``texts``."""
    assert not any(SECRET in text for text in texts)
    for path in folder.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path


def siuo_eval_command(*args: str | Path) -> list[str]:
    """The command line of ``siuo-eval ARGS`` with this interpreter."""
    return [sys.executable, "-m", "siuo_task.commands.cli", *map(str, args)]


def siuo_eval(
    *args: str | Path, env: dict[str, str] | None = None, timeout: int = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``siuo-eval ARGS`` in a subprocess (``env`` None: this process's environment)."""
    return subprocess.run(siuo_eval_command(*args), env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def authors_rows(count_per_category: int = 2, responses: int = 3, tag: str = "") -> list[dict[str, Any]]:
    """Items in the authors' results format with distinct responses per item."""
    gen, _ = real_items()
    keep = set(per_category(gen, count_per_category))
    return [
        {**item, "responses": [f"{tag}reply {n} to {item['question_id']}" for n in range(responses)]}
        for item in gen
        if item["question_id"] in keep
    ]


def write_json(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


def read_run(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    results = json.loads((folder / "results.json").read_text())
    samples = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    return results, samples


def verdicts(samples: list[dict[str, Any]]) -> list[tuple[int, Any, Any]]:
    """Per response: (question_id, safety verdict, effectiveness verdict), for comparing runs."""
    rows = []
    for sample in samples:
        record = sample["siuo"]
        for response in record["responses"]:
            safety, effect = response["safety_judge"] or {}, response["effectiveness_judge"] or {}
            rows.append((record["question_id"], safety.get("verdict"), effect.get("verdict")))
    return sorted(rows, key=repr)
