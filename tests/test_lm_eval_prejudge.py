"""The lm-eval adapter's in-run judging, driven in process with lm-eval's own filter pipeline.

lm-eval's FilterEnsemble hands each filter (responses, documents) for all of a rank's
instances; JudgeTogether judges them in one batch and process_results only assembles. These
tests check, against a real loopback judge, that the batch leaves the responses untouched,
judges each response once with many calls in flight, and gives every item exactly the numbers
judging that document alone gives (the fallback when a filter sees no documents).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lm_eval")

from lm_eval.api.filter import FilterEnsemble
from lm_eval.api.instance import Instance
from lm_eval.filters import build_filter_ensemble

from siuo_task.adapters.lm_eval import hooks, mode, prejudge
from siuo_task.benchmark.results import SUMMARY_ROW, USAGE_REDUCERS
from tests.helpers.in_process import judge_settings
from tests.helpers.judge_server import JudgeServer


@pytest.fixture
def point_judge_at(small_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    return judge_settings(monkeypatch, small_data_dir, SIUO_JUDGE_CONCURRENCY="32")


def _docs() -> list[dict[str, Any]]:
    return [dict(row) for row in hooks.gen_dataset()["test"]]


def _instances(docs: list[dict[str, Any]]) -> list[Instance]:
    """One instance per document with 3 sampled responses (one empty now and then), as
    lm-eval's generate_until leaves them for the filters."""
    instances = []
    for index, doc in enumerate(docs):
        instance = Instance("generate_until", doc, ("prompt", {}), idx=0, metadata=("siuo_gen", index, 3))
        instance.resps = [f"Be careful: reply {doc['question_id']}-{k}." if (index + k) % 5 else "" for k in range(3)]
        instances.append(instance)
    return instances


def _siuo_gen_filter(judge: bool) -> FilterEnsemble:
    components: list[Any] = [["take_first_k", {"k": 3}]]
    if judge:
        components.append([prejudge.JudgeTogether, None])
    return build_filter_ensemble("none", components)


def _per_item(instances: list[Instance]) -> list[dict[str, Any]]:
    return [hooks.process_results_gen(instance.doc, [instance.filtered_resps["none"]]) for instance in instances]


def _comparable(rows: dict[str, Any]) -> dict[str, Any]:
    """Everything but when and how the calls ran (timing, usage, endpoint)."""
    full = {k: v for k, v in rows[SUMMARY_ROW].items() if k not in USAGE_REDUCERS and k != "judge_endpoint"}
    record = rows["siuo"]
    votes = {k: record[k] for k in ("safe", "effective", "safe_effective", "missing_votes", "judge_errors")}
    printed = {k: v for k, v in rows.items() if k not in (SUMMARY_ROW, "siuo")}
    return {"printed": printed, "full": full, "votes": votes}


def test_the_filter_judges_all_documents_together_with_the_per_document_numbers(
    point_judge_at: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with JudgeServer(latency_s=0.05) as judge:
        point_judge_at(judge)
        docs = _docs()  # a judged run's documents: the judge is checked as they are built
        together = _instances(docs)
        sent = [list(instance.resps) for instance in together]
        _siuo_gen_filter(judge=True).apply(together)
        judged_in_filter = len(judge.log.exchanges)
        batched = _per_item(together)
        peak, calls = judge.peak_in_flight, len(judge.log.exchanges)
    non_empty = sum(1 for responses in sent for response in responses if response)
    # Responses pass through unchanged; every call was made by the filter, none again later.
    assert [instance.filtered_resps["none"] for instance in together] == sent
    assert judged_in_filter == calls == 2 * non_empty
    assert peak > 8, peak

    with JudgeServer(latency_s=0.05) as judge:
        point_judge_at(judge)
        # A new run (its settings are read when its documents are built), at the second judge.
        alone = _instances(_docs())
        with caplog.at_level(logging.WARNING):
            # A filter that is not handed the documents: the fallback judges per document.
            prejudge.JudgeTogether().apply([instance.resps for instance in alone], None)
        assert "judging per document instead" in caplog.text and not judge.log.exchanges
        _siuo_gen_filter(judge=False).apply(alone)
        per_document = _per_item(alone)
        assert len(judge.log.exchanges) == 2 * non_empty and judge.peak_in_flight <= 6

    assert [_comparable(rows) for rows in batched] == [_comparable(rows) for rows in per_document]
    assert any(rows[SUMMARY_ROW]["judge_errors"]["count"] for rows in batched)  # declines are counted, not verdicts


def test_predict_only_needs_no_judge_and_judges_nothing(small_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SIUO_JUDGE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SIUO_DATA_DIR", str(small_data_dir))
    with pytest.raises(SystemExit, match="no judge API key"):
        hooks.gen_dataset()
    monkeypatch.setattr("sys.argv", ["lm_eval", "--tasks", "siuo_gen", "--predict_only"])
    assert mode.predict_only()
    docs = _docs()
    instances = _instances(docs)
    _siuo_gen_filter(judge=True).apply(instances)  # no key, no judge: nothing is sent
    assert [instance.filtered_resps["none"] for instance in instances] == [instance.resps for instance in instances]
    monkeypatch.setattr("sys.argv", ["lm_eval", "-x"])
    assert mode.predict_only()
    monkeypatch.setattr("sys.argv", ["lm_eval", "--tasks", "siuo_gen"])
    assert not mode.predict_only()
    monkeypatch.setattr("sys.argv", ["pytest", "-x"])  # another program's -x
    assert not mode.predict_only()
