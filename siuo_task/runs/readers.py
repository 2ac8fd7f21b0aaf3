"""The one interface through which commands find every harness's runs in a folder.

Each harness adapter (``siuo_task/adapters/<harness>/reader.py``) and our own files
(``siuo_task.runs.ours``) provide a reader, registered in the ``siuo_task.readers`` entry-point
group of the package metadata. A reader looks at one file at a time and says whether it is its
harness's, and what it is:

- ``find_responses(file)``: a file of model responses that ``siuo-eval judge`` can judge
  (a ``ResponsesFile``), a ``Note`` saying why a file of its harness is passed over, or None
  when the file is not its harness's;
- ``read_responses(found, data)``: the responses of each item in that file;
- ``find_results(file)``: the judged runs a results file holds (for ``report``,
  ``export-review`` and ``agreement``), a ``Note``, or None.

The commands import no adapter: they call ``readers()``. Adding a harness is a new adapter
folder and one line in pyproject.toml.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from siuo_task.benchmark.card import run_name
from siuo_task.errors import DataError

if TYPE_CHECKING:
    from siuo_task.benchmark.data import SiuoData
    from siuo_task.runs.files import ResponseSet
    from siuo_task.runs.model import Run

ENTRY_POINT_GROUP = "siuo_task.readers"
# Where our tasks keep, in a harness's results file, what the harness has no metric row for.
SUMMARY_KEY = "siuo"
CANDIDATE_SUFFIXES = frozenset({".json", ".jsonl", ".xlsx", ".tsv", ".csv", ".eval"})


@dataclass(frozen=True)
class Note:
    """Why a file was passed over. ``failure``: it looked like an input and is broken;
    ``quiet``: an expected companion (a results file beside samples), listed only when a path
    yields nothing usable."""

    path: Path
    reason: str
    failure: bool = False
    quiet: bool = False


@dataclass
class ResponsesFile:
    """A file of one run's responses, as a reader found it."""

    harness: str
    model: str  # the model as the harness recorded it
    task: str  # the eval-card task that produced the responses
    path: Path
    kind: str  # what the file is, in words ("lm-eval siuo_gen_greedy samples")
    named_by: str  # where the model name came from
    reader: RunReader = field(repr=False)
    suffix: str | None = None  # a harness's own variant suffix, else the card's
    name: str = ""
    stamp: str | None = None  # the harness's own stamp of the run (see Run.stamp)
    settings: str = ""  # the model's recorded settings (see Run.settings)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.model + self.suffix if self.suffix is not None else run_name(self.model, self.task)

    def read(self, data: SiuoData) -> list[ResponseSet]:
        return self.reader.read_responses(self, data)


class RunReader(Protocol):
    """What an adapter's reader provides (see the module docstring)."""

    harness: str
    # Readers are asked in ascending order; a generic reader (JSON of any name) goes last.
    order: int

    def find_responses(self, path: Path) -> ResponsesFile | Note | None: ...

    def read_responses(self, found: ResponsesFile, data: SiuoData) -> list[ResponseSet]: ...

    def find_results(self, path: Path) -> list[Run] | Note | None: ...


@lru_cache(maxsize=1)
def readers() -> tuple[RunReader, ...]:
    """Every registered reader, in the order they are asked."""
    loaded = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded.append(entry.load())
        except Exception as exc:  # an adapter whose harness is missing must not stop the others
            raise DataError(
                f"the reader '{entry.name}' ({entry.value}) could not be loaded ({type(exc).__name__}: {exc}); "
                "reinstall siuo-task (pip install -e .)"
            ) from exc
    if not loaded:
        raise DataError("no run readers are registered: reinstall siuo-task (pip install -e .) so its metadata exists")
    return tuple(sorted(loaded, key=lambda reader: (reader.order, reader.harness)))


def candidate_files(path: Path, skip: Path | None = None) -> list[Path]:
    """The files under ``path`` (itself, if a file) that a reader may claim, sorted; nothing
    inside ``skip`` (a command's own output folder)."""
    if path.is_file():
        return [path]
    skipped = skip.resolve() if skip is not None else None
    return sorted(
        file
        for file in path.rglob("*")
        if file.is_file()
        and file.suffix in CANDIDATE_SUFFIXES
        and not (skipped is not None and (skipped == file.resolve() or skipped in file.resolve().parents))
    )


def classify_responses(file: Path) -> ResponsesFile | Note | None:
    for reader in readers():
        found = reader.find_responses(file)
        if found is not None:
            return found
    return None


def classify_results(file: Path) -> list[Run] | Note | None:
    for reader in readers():
        found = reader.find_results(file)
        if found is not None:
            return found
    return None


def join_parts(parts: Sequence[Run]) -> list[Run]:
    """Join parts of one harness, model and folder whose tasks do not overlap (one run may be
    written as several files); parts that overlap (reruns) stay separate runs."""
    joined: list[Run] = []
    # Open-ended parts of the paper's protocol first, so a multiple-choice part joins that run
    # rather than a one-response variant of the same model.
    for part in sorted(parts, key=_join_order):
        home = next((run for run in joined if _joinable(run, part)), None)
        if home is None:
            joined.append(part)
            continue
        for slot in ("gen", "mcq", "circular"):
            if getattr(home, slot) is None and getattr(part, slot) is not None:
                setattr(home, slot, getattr(part, slot))
        home.judge_meta = home.judge_meta or part.judge_meta
        home.name = home.default_name()
    return joined


def _join_order(part: Run) -> int:
    if part.gen is None:
        return 2
    return 1 if part.one_response else 0


def _joinable(run: Run, part: Run) -> bool:
    if (run.harness, run.model, run.source.parent) != (part.harness, part.model, part.source.parent):
        return False
    return all(getattr(run, slot) is None or getattr(part, slot) is None for slot in ("gen", "mcq", "circular"))


def split_spec(spec: str) -> tuple[str | None, Path]:
    """``NAME=PATH`` -> (NAME, PATH); a plain PATH (even one containing '=') -> (None, PATH)."""
    if "=" in spec and not Path(spec).exists():
        name, _, raw = spec.partition("=")
        return name, Path(raw)
    return None, Path(spec)


def listing(files: Iterable[Path]) -> str:
    return "; ".join(str(file) for file in files)


def model_from_args(model_args: str) -> str:
    """The model path a harness's ``--model_args`` string names (``pretrained=``, ``model=``, ...)."""
    for part in model_args.split(","):
        key, _, value = part.partition("=")
        if key.strip() in ("pretrained", "model", "model_name", "model_id", "path") and value:
            return value.strip()
    return ""


def short_model(path_or_name: str) -> str:
    """``Qwen/Qwen2.5-VL-7B-Instruct`` or ``/models/qwen/`` -> the last part."""
    return Path(path_or_name.rstrip("/")).name or path_or_name


def task_values(results: dict[str, Any], task: str) -> dict[str, Any]:
    """Every value of one task in a harness's results file written by our tasks, by name: the
    printed metric rows (``"results"``, names without the ``,none`` filter suffix) and the task
    summary our tasks add under ``"siuo"`` (CIs, per-category rates, judge identity, protocol,
    usage). Files written before that summary existed had all of it as metric rows."""
    summary = (results.get(SUMMARY_KEY) or {}).get(task, {})
    rows = {key.split(",", 1)[0]: value for key, value in results["results"][task].items() if key != "alias"}
    values = {**summary, **rows}
    for name in [key for key in values if key.endswith("_ci95_low")]:
        base = name.removesuffix("_low")
        if base not in values and isinstance(values.get(f"{base}_high"), (int, float)):
            values[base] = [values[name], values[f"{base}_high"]]
    return values
