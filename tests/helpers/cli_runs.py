"""Running ``siuo-eval`` as a user would (a subprocess with its own environment), for CLI tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers.fixture_data import per_category, real_items

SECRET = "sk-sweep-secret-abcdef0123456789"


def judge_env(data_dir: Path, base_url: str, cache: Path | str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIUO_", "OPENAI_"))}
    env.update(SIUO_DATA_DIR=str(data_dir), SIUO_JUDGE_BASE_URL=base_url, SIUO_JUDGE_API_KEY=SECRET)
    env.update(SIUO_JUDGE_CACHE=str(cache), SIUO_JUDGE_BACKOFF="0.05", SIUO_JUDGE_BATCH_POLL="0.05", **extra)
    return env


def siuo_eval(*args: str | Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "siuo_task.cli", *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


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
