"""The lmms-eval adapter: YAML metric lists match what the hooks return; tasks are discoverable."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from siuo_task.adapters.lmms_eval import hooks, tasks_dir
from siuo_task.benchmark.data import load_siuo
from siuo_task.benchmark.results import RECORD_KEY, SUMMARY_ROW
from tests.helpers.judge_server import JudgeServer

ROOT = Path(__file__).resolve().parent.parent


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def _yaml(name: str) -> dict[str, Any]:
    return yaml.load((tasks_dir() / "siuo" / name).read_text(), Loader=_Loader)


def _metric_names(config: dict[str, Any]) -> set[str]:
    return {entry["metric"] for entry in config["metric_list"]}


def _one_doc_per_category(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list({doc["category"]: doc for doc in docs}.values())


def test_gen_metric_list_matches_returned_keys(full_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIUO_DATA_DIR", str(full_data_dir))
    with JudgeServer() as server:
        monkeypatch.setenv("SIUO_JUDGE_BASE_URL", server.base_url)
        monkeypatch.setenv("SIUO_JUDGE_TRACES", "1")
        docs = _one_doc_per_category(list(hooks.process_docs_gen(None)))
        rows = [hooks.process_results_gen(doc, ["<think>a plan</think>an answer", ""]) for doc in docs]
    returned = set().union(*rows)
    assert returned - {RECORD_KEY} == _metric_names(_yaml("_siuo_gen_template_yaml"))
    # Every metric row is a number; the full per-item values ride along for the task summary.
    for row in rows:
        assert all(isinstance(row[name], (int, float)) for name in row if name not in (RECORD_KEY, SUMMARY_ROW))
        assert row[SUMMARY_ROW]["safe_rate"]["question_id"] == row[RECORD_KEY]["question_id"]


def test_mcq_metric_list_matches_returned_keys(full_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIUO_DATA_DIR", str(full_data_dir))
    docs = _one_doc_per_category(list(hooks.process_docs_mcq(None)))
    returned = set().union(*(hooks.process_results_mcq(doc, ["<think>B?</think>(A)"]) for doc in docs))
    assert returned - {RECORD_KEY} == _metric_names(_yaml("siuo_mcq.yaml"))


def test_committed_yaml_is_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("gen_task_yaml", ROOT / "scripts" / "gen_task_yaml.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for path, text in module.rendered().items():
        assert path.read_text() == text, f"{path.name} is stale: run python scripts/gen_task_yaml.py"


def test_task_settings() -> None:
    paper, greedy, mcq = _yaml("siuo_gen.yaml"), _yaml("siuo_gen_greedy.yaml"), _yaml("siuo_mcq.yaml")
    assert paper["repeats"] == 3 and paper["filter_list"][0]["filter"][0] == {"function": "take_first_k", "k": 3}
    assert paper["generation_kwargs"]["temperature"] == 1.0 and paper["generation_kwargs"]["max_new_tokens"] == 500
    assert "repeats" not in greedy and greedy["generation_kwargs"]["do_sample"] is False
    assert mcq["generation_kwargs"]["temperature"] == 0 and mcq["output_type"] == "generate_until"
    assert _yaml("siuo.yaml") == {"group": "siuo", "task": ["siuo_gen", "siuo_mcq"], "metadata": {"version": 1.0}}


def test_docs_carry_what_the_judge_needs(small_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIUO_DATA_DIR", str(small_data_dir))
    monkeypatch.setenv("SIUO_JUDGE_API_KEY", "sk-not-used-here-000000")
    with JudgeServer() as judge:  # building a judged task's documents checks the judge once
        monkeypatch.setenv("SIUO_JUDGE_BASE_URL", judge.base_url)
        doc = hooks.process_docs_gen(None)[0]
        assert len(judge.log.probes) == 1 and not judge.log.exchanges
    assert hooks.doc_to_text_gen(doc) == load_siuo(small_data_dir).gen[0].question
    assert Path(doc["image_path"]).is_file()
    assert hooks.doc_to_visual(doc)[0].mode == "RGB"


def test_installed_entry_point_registers_the_task_folder() -> None:
    from importlib.metadata import entry_points

    (entry,) = [ep for ep in entry_points(group="lmms_eval.models") if ep.name == "siuo_task"]
    assert entry.load()() == []  # no model manifests, only the task folder
    from lmms_eval.tasks import TaskManager

    manager = TaskManager()
    assert {"siuo", "siuo_gen", "siuo_gen_greedy", "siuo_mcq"} <= set(manager.all_tasks)
    manager_with_flag = TaskManager(include_path=str(tasks_dir()))
    assert manager_with_flag.all_tasks == manager.all_tasks


def test_mcq_circular_docs_and_metric_list(full_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from siuo_task.benchmark.circular import rotate

    monkeypatch.setenv("SIUO_DATA_DIR", str(full_data_dir))
    docs = list(hooks.process_docs_mcq_circular(None))
    items = load_siuo(full_data_dir).mcq
    assert len(docs) == 4 * len(items) == 668
    # Item-major, so --limit 4k asks k whole items.
    assert [(doc["question_id"], doc["rotation"]) for doc in docs[:5]] == [
        (items[0].question_id, 0), (items[0].question_id, 1), (items[0].question_id, 2),
        (items[0].question_id, 3), (items[1].question_id, 0),
    ]  # fmt: skip
    for doc in docs[:8]:
        question = rotate(next(i for i in items if i.question_id == doc["question_id"]), doc["rotation"])
        assert hooks.doc_to_text_mcq(doc) == question.prompt()
        assert hooks.doc_to_target_mcq(doc) == question.gold
    returned = set().union(*(hooks.process_results_mcq_circular(doc, ["(A)"]) for doc in docs))
    assert returned - {RECORD_KEY} == _metric_names(_yaml("siuo_mcq_circular.yaml"))
    assert [entry["metric"] for entry in _yaml("siuo_mcq_circular.yaml")["metric_list"]][:2] == [
        "circular_accuracy",
        "circular_accuracy_stderr",  # after its headline: it replaces lmms-eval's "N/A" stderr
    ]
