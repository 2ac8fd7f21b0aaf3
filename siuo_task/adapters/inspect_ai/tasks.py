"""SIUO tasks for Inspect (Wang et al., "Safe Inputs but Unsafe Output", Findings of NAACL 2025).

    inspect eval siuo_task/siuo_gen --model openai/gpt-4o           # paper protocol: 3 epochs, vote
    inspect eval siuo_task/siuo_gen_greedy --model openai/gpt-4o    # one greedy response per item
    inspect eval siuo_task/siuo_mcq --model openai/gpt-4o
    inspect eval siuo_task/siuo_gen -T judge_model=Qwen/Qwen2.5-VL-72B-Instruct \\
        -T judge_base_url=http://127.0.0.1:8000/v1 --model ...

The judge defaults to SIUO_JUDGE_* (see the README); its API key is only ever read from the
environment, never a task parameter, because Inspect writes task parameters into the log.
"""

from __future__ import annotations

from inspect_ai import Epochs, Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import ChatMessageUser, ContentImage, ContentText, GenerateConfig
from inspect_ai.solver import generate

from siuo_task.adapters.inspect_ai.scoring import judge_config, siuo_gen_judge, siuo_mcq_letter, siuo_vote
from siuo_task.data import GenItem, McqItem, load_siuo
from siuo_task.prompts import PROMPT_VERSION, mcq_prompt, prompt_templates_sha256

PAPER_EPOCHS = 3
GEN_MAX_TOKENS = 500
MCQ_MAX_TOKENS = 32


def _sample(item: GenItem | McqItem, text: str, target: str) -> Sample:
    content = [ContentImage(image=str(item.image_path)), ContentText(text=text)]
    return Sample(
        id=item.question_id,
        input=[ChatMessageUser(content=content)],  # type: ignore[arg-type]
        target=target,
        metadata={"question_id": item.question_id, "category": item.category, "image": item.image},
    )


def _gen_task(name: str, epochs: int, config: GenerateConfig, data_dir: str | None, **judge: str | None) -> Task:
    """The open-ended task; data and judge settings are checked here, before any generation."""
    data = load_siuo(data_dir)
    judge_settings = judge_config(**judge)
    samples = [_sample(item, item.question, item.reference_answer) for item in data.gen]
    return Task(
        name=name,
        dataset=MemoryDataset(samples, name="siuo_gen"),
        solver=generate(),
        scorer=siuo_gen_judge(data_dir=data_dir, **judge),
        epochs=Epochs(epochs, siuo_vote()),
        config=config,
        metadata={
            "judge_model_requested": judge_settings.model,
            "judge_endpoint": judge_settings.endpoint,
            "judge_prompt_sha256": prompt_templates_sha256(),
            # --epochs N changes the count (the vote stays); the log's eval config records it.
            "protocol": f"{PROMPT_VERSION}; one response per epoch ({epochs} by default), majority vote per item",
        },
        version="1.0.0",
    )


@task
def siuo_gen(data_dir: str | None = None, judge_model: str | None = None, judge_base_url: str | None = None) -> Task:
    """Paper protocol: 3 sampled responses per item (epochs), each judged, majority vote per item.

    Args:
        data_dir: SIUO data folder (default: $SIUO_DATA_DIR, else the pinned hub snapshot).
        judge_model: judge model (default: $SIUO_JUDGE_MODEL, else gpt-4o-2024-08-06).
        judge_base_url: OpenAI-compatible judge URL (default: $SIUO_JUDGE_BASE_URL, else OpenAI).
    """
    config = GenerateConfig(temperature=1.0, top_p=1.0, max_tokens=GEN_MAX_TOKENS)
    return _gen_task("siuo_gen", PAPER_EPOCHS, config, data_dir, judge_model=judge_model, judge_base_url=judge_base_url)


@task
def siuo_gen_greedy(
    data_dir: str | None = None, judge_model: str | None = None, judge_base_url: str | None = None
) -> Task:
    """One greedy response per item, no vote: cheaper, not the paper's protocol.

    Args:
        data_dir: SIUO data folder (default: $SIUO_DATA_DIR, else the pinned hub snapshot).
        judge_model: judge model (default: $SIUO_JUDGE_MODEL, else gpt-4o-2024-08-06).
        judge_base_url: OpenAI-compatible judge URL (default: $SIUO_JUDGE_BASE_URL, else OpenAI).
    """
    config = GenerateConfig(temperature=0.0, max_tokens=GEN_MAX_TOKENS)
    return _gen_task("siuo_gen_greedy", 1, config, data_dir, judge_model=judge_model, judge_base_url=judge_base_url)


@task
def siuo_mcq(data_dir: str | None = None) -> Task:
    """The same items as 4-option multiple choice (the authors' template); deterministic parsing.

    Args:
        data_dir: SIUO data folder (default: $SIUO_DATA_DIR, else the pinned hub snapshot).
    """
    data = load_siuo(data_dir)
    samples = [_sample(item, mcq_prompt(item.question, item.options), item.correct_option) for item in data.mcq]
    return Task(
        name="siuo_mcq",
        dataset=MemoryDataset(samples, name="siuo_mcq"),
        solver=generate(),
        scorer=siuo_mcq_letter(data_dir=data_dir),
        config=GenerateConfig(temperature=0.0, max_tokens=MCQ_MAX_TOKENS),
        metadata={"protocol": f"{PROMPT_VERSION}; authors' MCQ template, deterministic letter parsing"},
        version="1.0.0",
    )
