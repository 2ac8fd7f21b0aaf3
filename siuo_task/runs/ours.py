"""The reader of this package's own files: ``siuo-eval judge`` outputs (``results.json`` +
``samples.jsonl`` per run, ``leaderboard.json`` per sweep) and the authors' results format (a
JSON list of siuo_gen items, each with a ``responses`` list), registered like every adapter's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from siuo_task.benchmark.data import SiuoData
from siuo_task.benchmark.summary import JudgeResults
from siuo_task.errors import DataError
from siuo_task.runs.files import ResponseSet, read_each, read_record_lines, read_records, response_set
from siuo_task.runs.model import Run, TaskRun, gen_task_of
from siuo_task.runs.readers import Note, ResponsesFile

HARNESS = "siuo-eval judge"
AUTHORS = "authors' format"
COMPANIONS = ("results.json", "leaderboard.json", "leaderboard.csv")


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"'{path}' is not readable JSON ({exc})") from exc


def _run_section(results_file: Path) -> dict[str, Any]:
    """The ``run`` section ``siuo-eval judge`` writes into results.json (empty when absent)."""
    try:
        section = json.loads(results_file.read_text(encoding="utf-8")).get("run")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return {}
    return section if isinstance(section, dict) else {}


def _is_authors_format(rows: Any) -> bool:
    # An empty list is taken as such, so that it is named as holding no items; a list where some
    # items are malformed is too, so that reading it names each malformed item.
    return isinstance(rows, list) and (not rows or any(isinstance(r, dict) and "responses" in r for r in rows))


class OwnFilesReader:
    harness = HARNESS
    order = 100  # last: any JSON file may be the authors' format

    def find_responses(self, path: Path) -> ResponsesFile | Note | None:
        if path.name == "samples.jsonl":
            section = _run_section(path.with_name("results.json"))
            model = str(section.get("model") or section.get("name") or path.parent.name)
            named_by = "siuo-eval judge results.json" if section else "folder name"
            task = str(section.get("task") or "siuo_gen")
            suffix = section.get("suffix") if "model" in section else ""
            return ResponsesFile(HARNESS, model, task, path, "siuo-eval samples", named_by, self, suffix)
        if path.name in COMPANIONS:
            return Note(path, "skipped: a siuo-eval judge results file (its samples.jsonl is the input)", quiet=True)
        if path.suffix != ".json":
            return None
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return Note(path, f"cannot be read as JSON ({exc})", failure=True)
        if _is_authors_format(rows):
            counts = {len(r["responses"]) for r in rows if isinstance(r, dict) and isinstance(r.get("responses"), list)}
            task = "siuo_gen_greedy" if counts == {1} else "siuo_gen"
            return ResponsesFile(AUTHORS, path.stem, task, path, AUTHORS, "file name", self, suffix="")
        return Note(
            path,
            "skipped: not a SIUO input (expected the authors' results format, a JSON list of items with 'responses')",
        )

    def read_responses(self, found: ResponsesFile, data: SiuoData) -> list[ResponseSet]:
        if found.path.suffix == ".jsonl":
            return read_record_lines(found.path)
        rows = _json(found.path)
        if not isinstance(rows, list):
            raise DataError(
                f"'{found.path}': expected the authors' results format, a JSON list of items with 'responses'"
            )

        def read_one(entry: tuple[int, Any]) -> ResponseSet:
            index, row = entry
            where = f"'{found.path}' item #{index}"
            if not isinstance(row, dict):
                raise DataError(
                    f"{where} is a {type(row).__name__}, expected an object with 'question_id' and 'responses'"
                )
            return response_set(row.get("question_id"), row.get("responses"), where, row.get("question"))

        return read_each(found.path, enumerate(rows), read_one)

    def find_results(self, path: Path) -> list[Run] | Note | None:
        if path.name in ("leaderboard.json", "leaderboard.csv"):
            return Note(path, "skipped: a sweep's leaderboard (its runs' results.json are read)", quiet=True)
        if path.name != "results.json":
            return None
        results = _json(path)
        if not isinstance(results, dict) or not any(k in results for k in ("safe_rate", "accuracy")):
            return None
        return [self._run(results, path)]

    def _run(self, results: dict[str, Any], path: Path) -> Run:
        """A run from its results.json (read through ``JudgeResults``; a multiple-choice
        results.json, VLMEvalKit's, has the same sections but no judge)."""
        typed = JudgeResults.from_dict(results)
        metrics = {key: value for key, value in results.items() if not isinstance(value, dict)}
        samples = path.with_name("samples.jsonl")
        records = read_records(samples)
        items = typed.n_items if "n_items" in results else None
        meta = {**typed.judge, "usage": typed.usage}
        section: dict[str, Any] = typed.run if isinstance(typed.run, dict) else {}
        model = str(section.get("model") or section.get("name") or path.parent.name)
        # Outputs written before the run section recorded the model: the name as it was given.
        suffix = section.get("suffix") if "model" in section else ""
        detail = f"responses from {typed.input or 'unknown input'}"
        if section.get("harness"):
            detail += f" ({section['harness']})"
        if "safe_rate" in results:
            task = gen_task_of(str(section.get("task") or ""), records)
            part = TaskRun(task, metrics, records, samples, items)
            run = Run(path, part, None, HARNESS, model, meta, suffix=suffix, model_detail=detail)
            # Where the judged responses came from, so the run joins its harness run (report).
            run.judged_from = Path(typed.input) if typed.input else None
            return run
        part = TaskRun("siuo_mcq", metrics, records, samples, items)
        return Run(path, None, part, HARNESS, model, meta, model_detail=detail)


READER = OwnFilesReader()
__all__ = ["READER", "OwnFilesReader"]
