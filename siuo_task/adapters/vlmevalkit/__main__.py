"""``python -m siuo_task.vlmeval --model <VLMEvalKit model> --data SafeInputsUnsafeOutput_GEN3 ...``

Registers the SIUO datasets, then runs VLMEvalKit's own runner with the same arguments
(multi-GPU: ``torchrun --nproc-per-node N -m siuo_task.vlmeval ...``, as with VLMEvalKit).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from siuo_task.adapters.vlmevalkit import GEN_PAPER, register
from siuo_task.adapters.vlmevalkit.names import TASK_OF_DATASET
from siuo_task.adapters.vlmevalkit.sampling import PAPER_TEMPERATURE, sample_gen3_api_calls
from siuo_task.harness.api import (
    check_output_folder,
    cli_option,
    exit_nonzero_if_judge_failed,
    fail_plainly,
    task_started,
)

# ``import vlmeval`` logs this at ERROR level when the optional file <site-packages>/.env (API
# keys for VLMEvalKit's own API models) is absent, which is the usual case: our judge reads its
# settings from the environment, so a run would start with a false alarm.
_NO_ENV_FILE = "Did not detect the .env file"


class _DropNoEnvFile(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_NO_ENV_FILE)


@contextlib.contextmanager
def _quiet_missing_env_file() -> Iterator[None]:
    """While VLMEvalKit is first imported: drop only its missing-.env message (the root logger's
    own filter; every other record, and a real .env's loading, go on as usual)."""
    root = logging.getLogger()
    quiet = _DropNoEnvFile()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


@fail_plainly
def _check_work_dir() -> None:
    """VLMEvalKit's work folder (MMEVAL_ROOT, else --work-dir, else ./outputs, as its run.py
    chooses) can be written, before it imports, loads a model or generates anything."""
    work_dir = os.environ.get("MMEVAL_ROOT") or cli_option("--work-dir") or "./outputs"
    check_output_folder(Path(work_dir), "--work-dir")


# The skip reasons VLMEvalKit records (as status "done") for a dataset it did not run to the end.
_NOT_RUN = frozenset({"Incomplete infer result", "No infer result found", "invalid_dataset"})


def _watch_our_datasets() -> None:
    """VLMEvalKit logs a model x dataset combination that raised, or that ``--mode eval`` found no
    predictions for, records it in its status file as "done" and exits 0. Its record of one of
    our datasets with an error or such a skip reason leaves that dataset unfinished, so the
    process ends with status 1 (siuo_task.harness.run_end)."""
    import vlmeval.run as run

    record = run.upsert_dataset_status

    def upsert_dataset_status(*args: object, **kwargs: object) -> object:
        dataset = kwargs.get("dataset_name")
        error, skipped = kwargs.get("error_message"), kwargs.get("skip_reason")
        if dataset in TASK_OF_DATASET and ((isinstance(error, str) and error) or skipped in _NOT_RUN):
            task_started("VLMEvalKit", [str(dataset)])
        return record(*args, **kwargs)

    run.upsert_dataset_status = upsert_dataset_status


def main() -> None:
    _check_work_dir()
    # Early, so that after judge errors the process ends non-zero once VLMEvalKit is done.
    exit_nonzero_if_judge_failed("vlmeval", "vlmevalkit")
    with _quiet_missing_env_file():
        register()
        from vlmeval.run import main as vlmeval_main
        from vlmeval.smp import load_env
    _watch_our_datasets()
    # VLMEvalKit's run.py does this too: keys from a .env file, when there is one (silent if not).
    load_env()
    if GEN_PAPER in sys.argv and sample_gen3_api_calls():
        print(
            f"siuo-task: {GEN_PAPER} asks API models at temperature {PAPER_TEMPERATURE} (the paper's sampling; "
            "MCQ stays greedy); give --temperature to choose another",
            file=sys.stderr,
            flush=True,
        )
    vlmeval_main()


if __name__ == "__main__":
    main()
