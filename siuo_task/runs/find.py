"""One way to find runs, for responses (``siuo-eval judge``) and for results (``report``,
``export-review``, ``agreement``): the same rules, the same notes, in every command.

- **Naming**: the one naming rule (``siuo_task.benchmark.card.run_name``: the model as the harness recorded
  it plus a variant's suffix); ``NAME=PATH`` names the one run at PATH (a PATH holding several is
  an error listing them). Names are made file-system safe and unique (``x``, ``x-2``), since
  ``siuo-eval judge`` writes a folder per run.
- **Reruns**: under one path, runs of the same harness, name, task and recorded model settings
  are reruns; the newest by the harness's own stamp (its file name or recorded start time, never
  the file's mtime) is kept and the others are named as left out. Runs without a stamp (the
  authors' format, ``siuo-eval judge``'s own files) are all kept.
- **Judged later**: a ``siuo-eval judge`` run joins the harness run whose generation-only
  responses it judged, so ``report judged/ out/`` gives one run per model with the judged
  open-ended rates and the multiple-choice scores. A generation-only part read on its own is
  left out with a note saying to judge it first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from siuo_task.benchmark.card import TASKS
from siuo_task.errors import DataError
from siuo_task.runs.model import Run
from siuo_task.runs.ours import READER as OWN_FILES
from siuo_task.runs.readers import (
    Note,
    ResponsesFile,
    candidate_files,
    classify_responses,
    classify_results,
    join_parts,
    listing,
    split_spec,
)

Found = TypeVar("Found", ResponsesFile, Run)


@dataclass
class Finding(Generic[Found]):
    """What was found under the given paths: the runs kept, in order, and a note on every file
    passed over or left out (``failure`` notes are inputs that are broken)."""

    runs: list[Found] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


def describe(note: Note) -> str:
    """A note as every command prints it."""
    return f"siuo-eval: {'error' if note.failure else 'note'}: '{note.path}' {note.reason}"


# -- the shared rules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Identity:
    """What makes two runs reruns of each other, and which one is newer."""

    key: tuple[str, ...]
    stamp: str | None
    path: Path


def _identity_of_responses(found: ResponsesFile) -> _Identity:
    return _Identity((found.harness, found.name, found.task, found.settings), found.stamp, found.path)


def _identity_of_part(part: Run) -> _Identity:
    lead = part.gen or part.mcq or part.circular
    task = lead.task if lead else ""
    return _Identity((part.harness, part.name, task, part.settings), part.stamp, part.source)


def newest_only(found: Sequence[Found], identity: Callable[[Found], _Identity]) -> tuple[list[Found], list[Note]]:
    """Reruns reduced to the newest by the harness's stamp (ties: the later path); the others are
    noted as left out. Runs without a stamp are kept."""
    newest: dict[tuple[str, ...], Found] = {}
    for run in found:
        mine = identity(run)
        if mine.stamp is None:
            continue
        kept = newest.get(mine.key)
        if kept is None or (mine.stamp, str(mine.path)) > (identity(kept).stamp or "", str(identity(kept).path)):
            newest[mine.key] = run
    runs, notes = [], []
    for run in found:
        mine = identity(run)
        kept = newest.get(mine.key)
        if mine.stamp is None or kept is run:
            runs.append(run)
            continue
        assert kept is not None
        newer = identity(kept)
        notes.append(
            Note(
                mine.path,
                f"left out: an older run of {mine.key[1]} (stamped {mine.stamp}; the newest, stamped "
                f"{newer.stamp}, is {newer.path})",
            )
        )
    return runs, notes


def safe_name(name: str) -> str:
    """A file-system-safe run name: letters, digits, '.', '_', '-' only."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")
    return cleaned[:100] or "run"


def unique_names(runs: Sequence[Found]) -> list[Found]:
    """Every run's name made safe, and unique (``x``, ``x-2``, ...) in the order given."""
    taken: set[str] = set()
    for run in runs:
        base = safe_name(run.name)
        name, number = base, 2
        while name.lower() in taken:
            name, number = f"{base}-{number}", number + 1
        taken.add(name.lower())
        run.name = name
    return list(runs)


def _named(spec: str, path: Path, runs: list[Found], paths: Callable[[Found], Path]) -> Note | None:
    """The NAME=PATH rule: NAME names the one run at PATH; a PATH of several is an error."""
    if len(runs) <= 1:
        return None
    return Note(
        path,
        f"'{spec}': NAME=PATH names one run, but '{path}' holds {len(runs)}: "
        f"{listing(paths(run) for run in runs)}; name each file (NAME=FILE), or pass the folder without NAME=",
        failure=True,
    )


# -- responses, for siuo-eval judge ----------------------------------------------------------------


def find_responses(specs: Sequence[str], skip: Path | None = None) -> Finding[ResponsesFile]:
    """Every run's responses under ``specs`` (files or folders, recursively); nothing inside
    ``skip`` (the command's own output) is read. Files no reader takes, files a reader passes
    over and older reruns are noted, naming the file and why."""
    finding: Finding[ResponsesFile] = Finding()
    for spec in specs:
        name, path = split_spec(spec)
        if not path.exists():
            finding.notes.append(Note(path, "does not exist", failure=True))
            continue
        found, notes = _responses_at(path, skip)
        found, older = newest_only(found, _identity_of_responses)
        if not found and path.is_dir():
            # Nothing usable: say what was looked at, the expected companions included.
            looked = f"{len(notes)} file(s) looked at, listed above" if notes else "no candidate file in it"
            finding.notes += [*notes, Note(path, f"holds no SIUO generation inputs ({looked})", failure=True)]
            continue
        finding.notes += [note for note in notes if not note.quiet] + older
        if name is not None:
            problem = _named(spec, path, found, lambda run: run.path)
            if problem is not None:
                finding.notes.append(problem)
                continue
            for run in found:
                run.name, run.named_by = name, "NAME=PATH"
        finding.runs += found
    unique_names(finding.runs)
    return finding


def _responses_at(path: Path, skip: Path | None) -> tuple[list[ResponsesFile], list[Note]]:
    found, notes = [], []
    for file in candidate_files(path, skip=skip):
        classified = classify_responses(file)
        if classified is None and path.is_file():
            classified = _explicit_input(file)
        if isinstance(classified, ResponsesFile):
            found.append(classified)
        elif isinstance(classified, Note):
            # A file named on the command line and passed over is a failure, not a note.
            notes.append(Note(file, classified.reason, True) if path.is_file() else classified)
        else:
            notes.append(Note(file, "skipped: no reader recognises it (not a SIUO generation input)"))
    return found, notes


def _explicit_input(path: Path) -> ResponsesFile | Note:
    """A file named on the command line that no reader recognises by its name is read as our
    samples JSONL (lines with per-item records); reading it says what is wrong with it."""
    if path.suffix != ".jsonl":
        return Note(path, "is not a SIUO generation input (no reader recognises its name or content)", failure=True)
    return ResponsesFile("siuo-eval", path.stem, "siuo_gen", path, "responses file", "file name", OWN_FILES, "")


# -- results, for report, export-review and agreement ----------------------------------------------


def find_results(specs: Sequence[str]) -> Finding[Run]:
    """Every judged run under ``specs`` (results files, logs, folders searched recursively),
    named, reruns reduced to the newest, judged-later runs joined to their source.

    Raises:
        DataError: a PATH that does not exist, holds no SIUO run, or is named (NAME=) but holds
            several runs.
    """
    finding: Finding[Run] = Finding()
    per_spec: list[tuple[str, str | None, Path, list[Run]]] = []
    for spec in specs:
        name, path = split_spec(spec)
        if not path.exists():
            raise DataError(f"results path '{path}' does not exist")
        parts, notes = _results_at(path)
        parts, older = newest_only(parts, _identity_of_part)
        finding.notes += notes + older
        per_spec.append((spec, name, path, join_parts(parts)))
    homes = _join_judged_later([run for *_, runs in per_spec for run in runs])
    seen: set[int] = set()
    for spec, name, path, runs in per_spec:
        kept: list[Run] = []
        for run in (homes.get(id(run), run) for run in runs):
            if id(run) not in seen:
                seen.add(id(run))
                finding.notes += _drop_generation_only(run)
            if run.tasks() and not any(run is other for other in kept):
                kept.append(run)
        if not kept:
            skipped = [note for note in finding.notes if _under(note.path, path)]
            looked = "; ".join(f"{note.path}: {note.reason}" for note in skipped)
            detail = f" (passed over: {looked})" if looked else ""
            raise DataError(f"no judged SIUO run ({', '.join(TASKS)}) under '{path}'{detail}")
        if name is not None:
            problem = _named(spec, path, kept, lambda run: run.source)
            if problem is not None:
                raise DataError(problem.reason)
            kept[0].name = name
        finding.runs += [run for run in kept if not any(run is other for other in finding.runs)]
    unique_names(finding.runs)
    return finding


def _results_at(path: Path) -> tuple[list[Run], list[Note]]:
    parts: list[Run] = []
    notes: list[Note] = []
    for file in candidate_files(path):
        found = classify_results(file)
        if isinstance(found, Note):
            notes.append(found)
        elif found:
            parts.extend(found)
    return parts, notes


def _under(file: Path, path: Path) -> bool:
    return file == path or path in file.parents


def generation_only(run: Run) -> bool:
    """An open-ended part with responses but no judging (a --predict_only, --no-score or
    --mode infer run)."""
    gen = run.gen
    return gen is not None and not gen.records and "safe_rate" not in gen.metrics


def _drop_generation_only(run: Run) -> list[Note]:
    if not generation_only(run):
        return []
    assert run.gen is not None
    responses = run.gen.samples_file or run.source
    run.gen = None
    run.name = run.default_name()
    return [
        Note(
            responses,
            f"generation only: run `siuo-eval judge` first (`siuo-eval judge {responses} --output DIR`, then "
            "report DIR with this folder)",
        )
    ]


def _join_judged_later(runs: list[Run]) -> dict[int, Run]:
    """Join each ``siuo-eval judge`` run into the harness run whose generation-only responses it
    judged (or, for a harness that writes nothing for them, the run of the same model in the
    folder of those responses). Returns, by the id of each run joined away, the run it joined."""
    homes: dict[int, Run] = {}
    for judged in runs:
        source = judged.judged_from
        if source is None or judged.gen is None:
            continue
        home = next((run for run in runs if run is not judged and _responses_of(run, source)), None)
        if home is None:
            home = next((run for run in runs if _beside(run, judged, source)), None)
        if home is None:
            continue
        home.gen, home.judge_meta = judged.gen, judged.judge_meta
        home.joined.append(judged.source)
        home.name = home.default_name()
        homes[id(judged)] = home
    return homes


def _same_file(a: Path, b: Path) -> bool:
    # The judged run records its input as given on the command line, possibly relative to
    # another folder: the file and its folder's name identify a harness's stamped output.
    return a.resolve() == b.resolve() or (a.name == b.name and a.parent.name == b.parent.name)


def _responses_of(run: Run, source: Path) -> bool:
    return generation_only(run) and run.gen is not None and _same_file(run.gen.samples_file or run.source, source)


def _beside(run: Run, judged: Run, source: Path) -> bool:
    return (
        run is not judged
        and run.gen is None
        and run.judged_from is None
        and run.model == judged.model
        and _same_file(run.source.parent, source.parent)
    )
