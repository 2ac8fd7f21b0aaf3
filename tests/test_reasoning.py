"""Reasoning traces split from final answers: a corpus of reasoning-model outputs, MCQ parsing
of the answer only, and generation judging of the answer (and, when asked, the trace)."""

from __future__ import annotations

from pathlib import Path

import pytest

from siuo_task.benchmark.data import load_siuo
from siuo_task.benchmark.reasoning import DEFAULT_TAGS, ReasoningConfigError, ReasoningSettings, split_reasoning
from siuo_task.benchmark.results import GEN_REDUCERS, MCQ_REDUCERS, gen_item_values, mcq_item_values, reduce_values
from siuo_task.benchmark.scoring import score_gen_item, score_mcq_item
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine
from tests.helpers.judge_server import JudgeServer, choose_reply

# (raw output, expected answer, expected trace) as reasoning VLMs write them.
CORPUS = [
    ("<think>Maybe A? No, the safest is D.</think>\nD", "D", "Maybe A? No, the safest is D."),
    ("<think>\nstep 1\nstep 2\n</think>\n\nThe answer is (B).", "The answer is (B).", "\nstep 1\nstep 2\n"),
    ("<thinking>hmm</thinking>Sure, here is how.", "Sure, here is how.", "hmm"),
    ("<reasoning>r</reasoning> C", "C", "r"),
    ("◁think▷Kimi-VL style◁/think▷A", "A", "Kimi-VL style"),
    ("<THINK>upper case</THINK>B", "B", "upper case"),
    ("<|begin_of_thought|>long<|end_of_thought|>D", "D", "long"),
    # Two separate blocks: both are trace.
    ("<think>one</think>mid <think>two</think>end", "mid end", "one\n\ntwo"),
    # Nested blocks of the same tag: the outer block is the trace.
    (
        "<think>outer <think>inner</think> still thinking</think>Final: A",
        "Final: A",
        "outer <think>inner</think> still thinking",
    ),
    # Mixed tags nested: the inner tag stays inside the outer trace.
    ("<think>x <reasoning>y</reasoning> z</think>ok", "ok", "x <reasoning>y</reasoning> z"),
    # Opening tag prefilled by the chat template: only the closing tag in the output.
    (
        "the user asks about the knife</think>I can't help with that.",
        "I can't help with that.",
        "the user asks about the knife",
    ),
    # Unclosed: the model stopped while thinking; no final answer.
    ("<think>I should explain how to pick the lock: first", "", "I should explain how to pick the lock: first"),
    # No trace at all: unchanged.
    ("Plain answer (C).", "Plain answer (C).", None),
    ("I think </thinker> is not a tag", "I think </thinker> is not a tag", None),
]


@pytest.mark.parametrize(("raw", "answer", "trace"), CORPUS)
def test_corpus_splits(raw: str, answer: str, trace: str | None) -> None:
    split = split_reasoning(raw)
    assert (split.answer, split.trace) == (answer, trace)
    assert split.trace_only == (trace is not None and bool(trace.strip()) and not answer)


def test_empty_think_block_with_no_answer_is_an_empty_response_not_trace_only() -> None:
    split = split_reasoning("<think>  </think>")
    assert split.answer == "" and not split.trace_only


def test_settings_from_env() -> None:
    assert ReasoningSettings.from_env({}) == ReasoningSettings(DEFAULT_TAGS, False)
    assert ReasoningSettings.from_env({"SIUO_REASONING_TAGS": "none"}).tags == ()
    custom = ReasoningSettings.from_env({"SIUO_REASONING_TAGS": '[["[T]", "[/T]"]]', "SIUO_JUDGE_TRACES": "1"})
    assert custom == ReasoningSettings((("[T]", "[/T]"),), True)
    assert split_reasoning("[T]x[/T]y", custom.tags).answer == "y"
    assert split_reasoning("<think>x</think>y", ()).answer == "<think>x</think>y"
    with pytest.raises(ReasoningConfigError, match="SIUO_REASONING_TAGS is not JSON"):
        ReasoningSettings.from_env({"SIUO_REASONING_TAGS": "<think>"})
    with pytest.raises(ReasoningConfigError, match=r"\[open, close\] string pairs"):
        ReasoningSettings.from_env({"SIUO_REASONING_TAGS": '["<think>"]'})
    with pytest.raises(ReasoningConfigError, match="SIUO_JUDGE_TRACES='maybe'"):
        ReasoningSettings.from_env({"SIUO_JUDGE_TRACES": "maybe"})


def test_mcq_reads_the_final_answer_not_the_trace(small_data_dir: Path) -> None:
    item = load_siuo(small_data_dir).mcq[0]
    wrong = next(letter for letter in "ABCD" if letter != item.correct_option)
    raw = f"<think>Maybe {wrong}? No.</think>\n{item.correct_option}"
    score = score_mcq_item(item, raw)
    assert score.parsed == item.correct_option and score.correct
    record = score.to_dict()
    assert record["response"] == raw and record["answer"] == item.correct_option
    assert record["trace"] == f"Maybe {wrong}? No."
    only_trace = score_mcq_item(item, f"<think>The answer is ({item.correct_option})")
    assert only_trace.parsed is None and not only_trace.correct and only_trace.to_dict()["trace_only"]
    totals = reduce_values([mcq_item_values(score), mcq_item_values(only_trace)], MCQ_REDUCERS)
    assert totals["trace_only_responses"] == 1 and totals["accuracy"] == 50.0 and totals["unparsed_rate"] == 50.0


def _engine(server: JudgeServer) -> JudgeEngine:
    return JudgeEngine(JudgeConfig(base_url=server.base_url, api_key="sk-reasoning-test-0000", model="m"))


def test_judge_sees_the_answer_and_trace_only_responses_get_no_vote(
    small_data_dir: Path, judge_server: JudgeServer
) -> None:
    item = load_siuo(small_data_dir).gen[0]
    responses = ["<think>secret plan</think>Final answer one", "<think>still thinking, never done", ""]
    score = score_gen_item(item, responses, _engine(judge_server))
    judged = [(e.kind, e.response) for e in judge_server.log.exchanges]
    assert sorted(judged) == [("effectiveness", "Final answer one"), ("safety", "Final answer one")]
    first, trace_only, empty = score.responses
    assert first.safe is choose_reply("safety", "Final answer one")[1]
    assert trace_only.trace_only and (trace_only.safe, trace_only.effective) == (None, None)
    assert (empty.safe, empty.effective) == (True, False) and not empty.trace_only
    assert score.trace_only_responses == 1 and score.missing_votes
    record = score.to_dict()["responses"][1]
    assert record["trace_only"] and record["trace"] == "still thinking, never done" and record["answer"] == ""
    assert record["safety_judge"] is None and not record["empty"]


def test_traces_judged_for_safety_when_asked(small_data_dir: Path, judge_server: JudgeServer) -> None:
    item = load_siuo(small_data_dir).gen[0]
    traces = [f"trace number {n}" for n in range(40)]
    decided = [t for t in traces if choose_reply("safety", t)[1] is not None][:3]
    responses = [f"<think>{trace}</think>answer {n}" for n, trace in enumerate(decided)]
    settings = ReasoningSettings(judge_traces=True)
    score = score_gen_item(item, responses, _engine(judge_server), settings)
    safety_texts = [e.response for e in judge_server.log.exchanges if e.kind == "safety"]
    assert sorted(safety_texts) == sorted(decided + [f"answer {n}" for n in range(3)])
    meant = [choose_reply("safety", trace)[1] for trace in decided]
    assert [r.trace_safe for r in score.responses] == meant
    assert score.trace_safe == (sum(meant) * 2 > 3)
    values = gen_item_values(score, _engine(judge_server).config, 0.0, 1.0)
    totals = reduce_values([values], GEN_REDUCERS)
    assert totals["trace_safe_rate"] == (100.0 if score.trace_safe else 0.0)
    assert totals["judge_calls"] == 9
    # Without the setting the trace is never sent and the metric is absent.
    plain = score_gen_item(item, responses, _engine(judge_server))
    assert "trace_safe_rate" not in gen_item_values(plain, _engine(judge_server).config, 0.0, 1.0)
