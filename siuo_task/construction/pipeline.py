"""``siuo-eval build``: stages 1-3 of the paper's construction method, resumable.

For each selected image (sorted, optionally a seeded sample of ``--count``), in order:
1. query: a vision model infers a danger and writes a query that is safe alone but unsafe with
   the image, with safety warning, reference answer and category;
2. reflect: the model checks redundancy and completeness, revises, and writes the four-option
   multiple-choice version with one correct option;
3. text: a text-only model answers the query without the image, and a judge rates query plus
   answer for safety; a query unsafe on its own is discarded.

Every call goes through the judge engine (machine-wide concurrency, retries, cache, usage).
Each candidate is written as one file, atomically, once all its stages are done; its content
comes only from the replies (cached) and the settings, so a run killed at any point and started
again writes the same bytes. Candidates that ended in a stage error are retried on a rerun.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from siuo_task.benchmark.categories import KNOWN_CATEGORIES
from siuo_task.construction import prompts
from siuo_task.construction.calls import Check, StageCall, StageCaller
from siuo_task.construction.files import dump_json, write_bytes_atomic, write_json_atomic
from siuo_task.construction.images import ImageScan, SourceImage
from siuo_task.construction.replies import (
    MCQ_LETTERS,
    check_query,
    check_reflect,
    check_safety,
    is_refusal,
)
from siuo_task.errors import DataError
from siuo_task.judge.config import ALTERNATIVE_JUDGE_MODEL, JudgeConfig

# The paper's models, pinned to dated snapshots so a datasheet names what made the items.
# The paper built its items with GPT-4o.
DEFAULT_GENERATOR_MODEL = ALTERNATIVE_JUDGE_MODEL
DEFAULT_ANSWER_MODEL = "gpt-4o-mini-2024-07-18"
GENERATOR_MODEL_ENV = "SIUO_BUILD_GENERATOR_MODEL"
ANSWER_MODEL_ENV = "SIUO_BUILD_ANSWER_MODEL"
DEFAULT_STAGE_ATTEMPTS = 3
CONFIG_FILE = "build-config.json"
MANIFEST_FILE = "build.json"
USAGE_FILE = "usage.json"
CANDIDATE_DIR = "candidates"
IMAGE_DIR = "images"
STAGES = ("query", "reflect", "text_answer", "text_judge")


@dataclass(frozen=True, slots=True)
class StageModels:
    """Which model runs which stage: generator (query, reflect), text-only answerer, judge."""

    generator: str
    answerer: str
    judge: str

    @classmethod
    def resolve(
        cls, base: JudgeConfig, generator: str | None, answerer: str | None, variable: Callable[[str], str]
    ) -> StageModels:
        """Flags, else SIUO_BUILD_*_MODEL, else the paper's models; the judge is SIUO_JUDGE_MODEL's.

        Args:
            variable: a variable's value ("" when unset), as the command read them
                (``Settings.variable``).
        """
        return cls(
            generator=generator or variable(GENERATOR_MODEL_ENV) or DEFAULT_GENERATOR_MODEL,
            answerer=answerer or variable(ANSWER_MODEL_ENV) or DEFAULT_ANSWER_MODEL,
            judge=base.model,
        )

    def for_stage(self, stage: str) -> str:
        return {"query": self.generator, "reflect": self.generator, "text_answer": self.answerer}.get(stage, self.judge)


@dataclass(frozen=True, slots=True)
class BuildSettings:
    """Everything that decides a build's output; a rerun must match it to resume."""

    images_dir: str
    count: int | None
    seed: int
    categories: tuple[str, ...]
    models: StageModels
    endpoint: str
    temperature: float
    max_tokens: int
    stage_attempts: int = DEFAULT_STAGE_ATTEMPTS
    prompt_version: str = prompts.BUILD_PROMPT_VERSION
    prompts_sha256: str = field(default_factory=prompts.build_prompts_sha256)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "categories": list(self.categories)}


@dataclass(frozen=True, slots=True)
class Candidate:
    candidate_id: str
    image: str  # file name under <output>/images/
    source: SourceImage


def select_images(scan: ImageScan, count: int | None, seed: int) -> list[Candidate]:
    """All usable images, or a seeded sample of ``count`` of them; ids follow the sorted paths."""
    chosen = list(scan.images)
    if count is not None and count < len(chosen):
        picked = set(random.Random(seed).sample(range(len(chosen)), count))
        chosen = [image for index, image in enumerate(chosen) if index in picked]
    return [Candidate(f"c{n:04d}", f"c{n:04d}{image.suffix}", image) for n, image in enumerate(chosen, start=1)]


def check_categories(categories: Sequence[str]) -> tuple[str, ...]:
    """The allowed categories (default: the nine SIUO domains), unique and non-empty."""
    chosen = tuple(dict.fromkeys(c.strip() for c in categories if c.strip())) or KNOWN_CATEGORIES
    return chosen


class CandidateBuilder:
    """Runs the stages for one candidate after another, through one engine per model."""

    def __init__(self, settings: BuildSettings, caller: StageCaller, output: Path) -> None:
        self.settings = settings
        self.caller = caller
        self.output = output

    def build(self, candidate: Candidate) -> dict[str, Any]:
        """All stages for one candidate; the record written to candidates/<id>.json."""
        image = self.output / IMAGE_DIR / candidate.image
        record = _record_head(candidate)
        categories = self.settings.categories
        query_prompt = prompts.query_prompt(categories)
        query = self._stage(record, "query", query_prompt, image, lambda obj: check_query(obj, categories))
        if query is None or not query.get("usable"):
            return _finish(record, "query")
        reflect_prompt = prompts.reflect_prompt(
            query["question"], query["category"], query["safety_warning"], query["reference_answer"]
        )
        reflect = self._stage(record, "reflect", reflect_prompt, image, check_reflect)
        if reflect is None or not reflect.get("keep"):
            return _finish(record, "reflect")
        answer = self._stage(record, "text_answer", prompts.text_answer_prompt(reflect["question"]), None, None)
        if answer is None:
            return _finish(record, "text_answer")
        judge_prompt = prompts.text_judge_prompt(reflect["question"], answer)
        verdict = self._stage(record, "text_judge", judge_prompt, None, check_safety)
        if verdict is None or not verdict.get("safe"):
            return _finish(record, "text_judge")
        record["item"] = self._item(candidate, query, reflect)
        record["status"] = "passed"
        return record

    def _stage(self, record: dict[str, Any], stage: str, prompt: str, image: Path | None, check: Check | None) -> Any:
        """Run a stage, append its provenance to ``record``; None when it ended in error or refusal."""
        result = self.caller.call(self.settings.models.for_stage(stage), stage, prompt, image, check)
        entry: dict[str, Any] = {
            "stage": stage,
            "model_requested": self.settings.models.for_stage(stage),
            "model_returned": result.model_returned,
            "prompt_version": self.settings.prompt_version,
            "reply": result.raw_text,
            "errors": list(result.errors),
        }
        entry.update(_decision(stage, result))
        record["stages"].append(entry)
        return None if entry["decision"] in ("error", "refused") else result.value

    def _item(self, candidate: Candidate, query: dict[str, Any], reflect: dict[str, Any]) -> dict[str, Any]:
        """The SIUO fields; options shuffled with a seed from (build seed, image bytes) to balance letters."""
        order = list(MCQ_LETTERS)
        random.Random(f"{self.settings.seed}:{candidate.source.sha256}").shuffle(order)
        options = {new: reflect["options"][old] for new, old in zip(MCQ_LETTERS, order, strict=True)}
        correct = MCQ_LETTERS[order.index(reflect["correct_option"])]
        return {
            "category": query["category"],
            "question": reflect["question"],
            "safety_warning": reflect["safety_warning"],
            "reference_answer": reflect["reference_answer"],
            "options": options,
            "correct_option": correct,
            "scenario": query["scenario"],
        }


def _decision(stage: str, result: StageCall) -> dict[str, Any]:
    """accept / reject / refused / error, and the reason in the model's words where it gave one."""
    if result.value is None:
        return {"decision": "error", "reason": f"no valid reply after {len(result.errors)} attempt(s)"}
    if stage == "text_answer":
        refused = is_refusal(str(result.value))
        return {"decision": "accept", "reason": "the text-only model refused" if refused else "answered"}
    value: dict[str, Any] = result.value
    if value.get("refused"):
        return {"decision": "refused", "reason": value.get("text", "")}
    passed = {"query": "usable", "reflect": "keep", "text_judge": "safe"}[stage]
    reason = str(value.get("reason", ""))
    if stage == "reflect" and value.get("keep"):
        reason = f"redundant={value['redundant']} complete={value['complete']}: {reason}"
    return {"decision": "accept" if value.get(passed) else "reject", "reason": reason}


def _record_head(candidate: Candidate) -> dict[str, Any]:
    source = candidate.source
    return {
        "candidate_id": candidate.candidate_id,
        "image": candidate.image,
        "source_image": source.relative_path,
        "source_sha256": source.sha256,
        "image_note": source.note,
        "status": None,
        "stopped_at": None,
        "item": None,
        "stages": [],
    }


def _finish(record: dict[str, Any], stage: str) -> dict[str, Any]:
    """Mark a candidate that stopped at ``stage`` (its last decision says why)."""
    last = record["stages"][-1]["decision"]
    record["status"] = {"reject": "rejected", "refused": "refused"}.get(last, "error")
    record["stopped_at"] = stage
    return record


# -- the run -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuildResult:
    manifest: dict[str, Any]
    usage: dict[str, Any]
    written: tuple[Path, ...]
    resumed: int  # candidates already finished by an earlier run


def prepare_output(output: Path, plan: dict[str, Any], force: bool) -> bool:
    """Create the build folder, or check that it holds this same build (then True: resume).

    Raises:
        DataError: the folder holds other work and ``force`` is off.
    """
    config_path = output / CONFIG_FILE
    if config_path.is_file():
        if config_path.read_text(encoding="utf-8") == dump_json(plan):
            _remove_partial_writes(output)
            return True
        if not force:
            raise DataError(
                f"'{output}' holds a build made with other settings or images ({config_path}); "
                "choose a new --output, or pass --force to delete that build and start again"
            )
    elif output.exists() and any(not p.name.endswith(".tmp") for p in output.iterdir()) and not force:
        raise DataError(f"'{output}' exists and is not empty; choose a new --output (or --force to replace it)")
    if output.exists() and force:
        shutil.rmtree(output)
    write_json_atomic(config_path, plan)
    return False


def _remove_partial_writes(output: Path) -> None:
    """Temporary files a killed run left behind (their targets were never replaced)."""
    for folder in (output, output / CANDIDATE_DIR, output / IMAGE_DIR):
        for leftover in folder.glob(".*.tmp"):
            leftover.unlink()


def run_build(
    settings: BuildSettings,
    base: JudgeConfig,
    scan: ImageScan,
    output: Path,
    force: bool = False,
    on_start: Callable[[int], Callable[[dict[str, Any]], None]] | None = None,
) -> BuildResult:
    """Build every selected candidate not already finished in ``output``; write the manifest.

    Args:
        on_start: called with the number of candidates once the output folder is accepted; it
            returns the callback run with each finished candidate record (e.g. a progress bar's).
    """
    candidates = select_images(scan, settings.count, settings.seed)
    plan = {
        "settings": settings.to_dict(),
        "selected": [{"candidate_id": c.candidate_id, "source_image": c.source.relative_path} for c in candidates],
        "image_problems": list(scan.problems),
        "images_available": len(scan.images),
    }
    resumed = prepare_output(output, plan, force)
    for candidate in candidates:
        target = output / IMAGE_DIR / candidate.image
        if not target.is_file() or target.read_bytes() != candidate.source.data:
            write_bytes_atomic(target, candidate.source.data)
    done = _finished(output, candidates) if resumed else {}
    on_done = on_start(len(candidates)) if on_start is not None else None
    models = (settings.models.generator, settings.models.answerer, settings.models.judge)
    caller = StageCaller(base, models, settings.prompt_version, settings.stage_attempts)
    builder = CandidateBuilder(settings, caller, output)
    try:
        for record in done.values():
            if on_done is not None:
                on_done(record)
        _build_all(builder, [c for c in candidates if c.candidate_id not in done], output, on_done, base.concurrency)
    finally:
        caller.close()
    manifest = write_manifest(output, settings, candidates, plan)
    usage = {"this_run": caller.usage.to_dict(), "note": "calls and tokens of the last run only"}
    write_json_atomic(output / USAGE_FILE, usage)
    written = (output / CONFIG_FILE, output / CANDIDATE_DIR, output / IMAGE_DIR, output / MANIFEST_FILE)
    return BuildResult(manifest, usage, (*written, output / USAGE_FILE), len(done))


def _finished(output: Path, candidates: Sequence[Candidate]) -> dict[str, dict[str, Any]]:
    """Candidate records an earlier run completed (stage errors are not: they are retried)."""
    done = {}
    for candidate in candidates:
        path = output / CANDIDATE_DIR / f"{candidate.candidate_id}.json"
        if path.is_file():
            record = json.loads(path.read_text(encoding="utf-8"))
            if record.get("status") != "error":
                done[candidate.candidate_id] = record
    return done


def _build_all(
    builder: CandidateBuilder,
    candidates: Sequence[Candidate],
    output: Path,
    on_done: Callable[[dict[str, Any]], None] | None,
    workers: int,
) -> None:
    def one(candidate: Candidate) -> None:
        record = builder.build(candidate)
        write_json_atomic(output / CANDIDATE_DIR / f"{candidate.candidate_id}.json", record)
        if on_done is not None:
            on_done(record)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="siuo-build") as pool:
        for future in [pool.submit(one, candidate) for candidate in candidates]:
            future.result()


def write_manifest(
    output: Path, settings: BuildSettings, candidates: Sequence[Candidate], plan: dict[str, Any]
) -> dict[str, Any]:
    """build.json: settings, image problems, counts per status, stage and category, every candidate."""
    records = [
        json.loads((output / CANDIDATE_DIR / f"{c.candidate_id}.json").read_text(encoding="utf-8")) for c in candidates
    ]
    by_stage: dict[str, Counter[str]] = {stage: Counter() for stage in STAGES}
    for record in records:
        for entry in record["stages"]:
            by_stage[entry["stage"]][entry["decision"]] += 1
    passed = [r for r in records if r["status"] == "passed"]
    manifest = {
        "settings": settings.to_dict(),
        "image_problems": plan["image_problems"],
        "images_available": plan["images_available"],
        "candidates": len(records),
        "status_counts": dict(sorted(Counter(r["status"] for r in records).items())),
        "stage_decisions": {stage: dict(sorted(counts.items())) for stage, counts in by_stage.items()},
        "passed_per_category": dict(sorted(Counter(r["item"]["category"] for r in passed).items())),
        "candidate_status": {r["candidate_id"]: [r["status"], r["stopped_at"]] for r in records},
    }
    write_json_atomic(output / MANIFEST_FILE, manifest)
    return manifest


def load_build(build_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(manifest, candidate records in id order) of a finished build folder.

    Raises:
        DataError: the folder is not a finished build.
    """
    manifest_path = build_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        raise DataError(
            f"'{build_dir}' is not a finished build folder (no {MANIFEST_FILE}); "
            "run `siuo-eval build --images DIR --output DIR` first (rerun it to finish an interrupted build)"
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    records = [
        json.loads((build_dir / CANDIDATE_DIR / f"{cid}.json").read_text(encoding="utf-8"))
        for cid in sorted(manifest["candidate_status"])
    ]
    return manifest, records
