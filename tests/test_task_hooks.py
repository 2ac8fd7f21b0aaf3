"""Each harness run's state stays with that run (siuo_task.harness.task_hooks).

Both adapters are imported (each patches its harness) before anything runs, and several runs
follow in one process, as in a notebook or this test session. Each used to leave something
process-wide that a later run read, so a result depended on what had run before it: a task
summary an unsaved run kept (written into the next run's results file), outcomes a filter
judged but no scoring took (served to a later run's scoring instead of its own judge calls),
and a judge engine stopped by a declining judge (which stopped every later run with that
judge). The harnesses' own task objects, filters and savers are used, against a loopback judge.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lm_eval")
pytest.importorskip("lmms_eval")

from siuo_task.adapters.lm_eval import hooks as lm_hooks  # patches lm-eval
from siuo_task.adapters.lm_eval import prejudge as lm_prejudge
from siuo_task.adapters.lmms_eval import hooks as lmms_hooks
from siuo_task.adapters.lmms_eval.plugin import register
from siuo_task.benchmark.results import SUMMARY_ROW
from siuo_task.harness.task_hooks import ItemCount, current_run
from tests.helpers.in_process import judge_settings
from tests.helpers.judge_server import JudgeServer

HARNESSES = ("lmms-eval", "lm-eval")


@pytest.fixture
def point_judge_at(small_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    point_at = judge_settings(monkeypatch, small_data_dir, SIUO_JUDGE_BACKOFF="0.01")
    register()  # lmms-eval's entry point: what `lmms-eval` runs first
    return point_at


def _task(harness: str, name: str) -> Any:
    """The harness's own task object, built from our task YAMLs (this builds its documents)."""
    if harness == "lm-eval":
        from lm_eval.tasks import TaskManager

        from siuo_task.adapters.lm_eval import tasks_dir

        return TaskManager(include_path=str(tasks_dir())).load([name])["tasks"][name]
    from lmms_eval.tasks import TaskManager, get_task_dict

    from siuo_task.adapters.lmms_eval import tasks_dir

    return get_task_dict([name], TaskManager(include_path=str(tasks_dir())))[name]


def _reply(doc: dict[str, Any]) -> str:
    return f"Please be careful with item {doc['question_id']}."


def _scored(harness: str, task: Any) -> dict[str, Any]:
    """The task's results entry as the harness's evaluator makes it: process_results per
    document (one response each, in the harness's layout), then each metric's aggregation."""
    per_doc = [
        task.process_results(doc, [[_reply(doc)]] if harness == "lm-eval" else [_reply(doc)])
        for doc in task.test_docs()
    ]
    return {
        f"{name},none": aggregate([values[name] for values in per_doc if name in values])
        for name, aggregate in task.aggregation().items()
        if any(name in values for values in per_doc)
    }


def _save(harness: str, results: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Save through the harness's own EvaluationTracker (as patched by the adapter) and read back."""
    if harness == "lm-eval":
        from lm_eval.loggers.evaluation_tracker import EvaluationTracker as LmTracker

        tracker = LmTracker(output_path=str(folder))
        tracker.general_config_tracker.model_name_sanitized = "model"
        tracker.save_results_aggregated(results=results, samples=None)
    else:
        from lmms_eval.loggers.evaluation_tracker import EvaluationTracker as LmmsTracker

        tracker = LmmsTracker(output_path=str(folder))
        tracker.general_config_tracker.model_name_sanitized = "model"
        tracker.save_results_aggregated(results, None, "20261206_000000")
    (written,) = folder.rglob("*results*.json")
    return json.loads(written.read_text(encoding="utf-8"))


@pytest.mark.parametrize("first", HARNESSES)
@pytest.mark.parametrize("second", HARNESSES)
def test_a_summary_is_written_only_into_its_own_runs_results(
    first: str, second: str, point_judge_at: Any, tmp_path: Path
) -> None:
    with JudgeServer() as judge:
        point_judge_at(judge)
        # Run 1 judges siuo_gen in process and is never saved (e.g. the Python API, no output path).
        entry = _scored(first, _task(first, "siuo_gen"))
    count = entry[f"{SUMMARY_ROW},none"]
    assert isinstance(count, ItemCount) and count == 18 and count.summary and count.summary["n_items"] == 18
    # Run 2 generates siuo_gen only (--predict_only): no scoring, so no summary of its own.
    generation_only = {"results": {"siuo_gen": {"alias": "siuo_gen", "bypass,none": 999, "bypass_stderr,none": "N/A"}}}
    saved = _save(second, generation_only, tmp_path / "run2")
    assert "siuo" not in saved and saved["results"]["siuo_gen"]["bypass,none"] == 999
    # Run 1's own results, saved, carry its summary, and its rows are plain numbers.
    saved = _save(second, {"results": {"siuo_gen": dict(entry)}}, tmp_path / "run1")
    assert saved["siuo"]["siuo_gen"] == json.loads(json.dumps(count.summary))
    assert saved["results"]["siuo_gen"][f"{SUMMARY_ROW},none"] == 18


def _lm_eval_documents() -> list[dict[str, Any]]:
    return [dict(row) for row in lm_hooks.gen_dataset()["test"]]


def test_outcomes_judged_ahead_never_stand_in_for_a_later_runs_calls(point_judge_at: Any) -> None:
    with JudgeServer(declines=False) as judge:
        point_judge_at(judge)
        docs = _lm_eval_documents()
        # Run 1: lm-eval's filter judges the rank's responses, then the run stops before scoring.
        lm_prejudge.JudgeTogether().apply([[_reply(doc)] for doc in docs], docs)
        judged_ahead = len(judge.log.exchanges)
        assert judged_ahead == 2 * len(docs) and len(current_run().judged) == len(docs)
        # Run 2 (lmms-eval, the same responses, the same judge) scores without a filter: its
        # verdicts come from its own judge calls, not from run 1's leftovers.
        run2_docs = list(lmms_hooks.process_docs_gen(None))
        rows = [lmms_hooks.process_results_gen(doc, [_reply(doc)]) for doc in run2_docs]
        assert len(judge.log.exchanges) == 2 * judged_ahead
    assert len(current_run().judged) == 0 and len(rows) == len(docs)


def test_a_judge_stopped_in_one_run_is_asked_afresh_by_the_next(
    point_judge_at: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    declining = {"now": True}
    monkeypatch.setenv("SIUO_JUDGE_DECLINE_WINDOW", "10")
    plan = lambda kind, response, attempt: "decline" if declining["now"] else None  # noqa: E731
    with JudgeServer(fault_for=plan, declines=False) as judge:
        point_judge_at(judge)
        docs = _lm_eval_documents()
        with pytest.raises(SystemExit, match="declin"):
            for doc in docs:
                lm_hooks.process_results_gen(doc, [[_reply(doc)]])
        # The judge is fixed; a new run with the same settings asks it again.
        declining["now"] = False
        docs = _lm_eval_documents()
        rows = [lm_hooks.process_results_gen(doc, [[_reply(doc)]]) for doc in docs]
    assert all(row[SUMMARY_ROW]["judge_errors"]["count"] == 0 for row in rows)
