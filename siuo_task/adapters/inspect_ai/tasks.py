"""SIUO tasks for Inspect (Wang et al., "Safe Inputs but Unsafe Output", Findings of NAACL 2025).

    inspect eval siuo_task/siuo_gen --model openai/gpt-4o           # paper protocol: 3 epochs, vote
    inspect eval siuo_task/siuo_gen_greedy --model openai/gpt-4o    # one greedy response per item
    inspect eval siuo_task/siuo_mcq --model openai/gpt-4o
    inspect eval siuo_task/siuo_mcq_circular --model openai/gpt-4o  # each item once per rotation
    inspect eval siuo_task/siuo_gen --no-score --model ...          # responses only; judge later
    inspect eval siuo_task/siuo_gen -T judge_model=Qwen/Qwen2.5-VL-72B-Instruct \\
        -T judge_base_url=http://127.0.0.1:8000/v1 --model ...

The judge defaults to SIUO_JUDGE_* (see the README); its API key is only ever read from the
environment, never a task parameter, because Inspect writes task parameters into the log. A
``--no-score`` run needs no judge settings at all; judge its log later with ``siuo-eval judge
LOG --output DIR`` or ``inspect score LOG --scorer siuo_task/siuo_gen_judge --output-file SCORED``
(Inspect logs a scorer by its bare name, so it must be named in full).

Names, versions, protocol lines and generation settings come from the eval card
(configs/eval_card.yaml).
"""

from __future__ import annotations

from inspect_ai import Epochs, Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import ChatMessageUser, ContentImage, ContentText, GenerateConfig
from inspect_ai.scorer import Scorer
from inspect_ai.solver import generate

from siuo_task.adapters.inspect_ai.circular import circular_sample_id, siuo_circular_letter
from siuo_task.adapters.inspect_ai.grader import (
    bound_graders,
    check_graders_before_the_run,
    cli_grader,
    grader_judge,
)
from siuo_task.adapters.inspect_ai.scoring import (
    cli_will_score,
    judge_check,
    judge_config,
    siuo_gen_judge,
    siuo_mcq_letter,
    siuo_vote,
)
from siuo_task.adapters.inspect_ai.setup_errors import plain_setup_errors
from siuo_task.harness.api import (
    CARD,
    CIRCULAR_TASK,
    MCQ_TASK,
    PROMPT_VERSION,
    GenItem,
    JudgeConfigError,
    McqItem,
    Settings,
    check_judge_before_generation,
    exit_nonzero_if_judge_failed,
    generation,
    mcq_prompt,
    prompt_templates_sha256,
    rotations,
    task_version,
)


def _sample(
    item: GenItem | McqItem, text: str, target: str, sample_id: int | str | None = None, **extra: object
) -> Sample:
    """The item's image, then ``text``; the id is the question id unless given."""
    content = [ContentImage(image=str(item.image_path)), ContentText(text=text)]
    return Sample(
        id=item.question_id if sample_id is None else sample_id,
        input=[ChatMessageUser(content=content)],  # type: ignore[arg-type]
        target=target,
        metadata={"question_id": item.question_id, "category": item.category, "image": item.image, **extra},
    )


def _protocol(name: str) -> str:
    return f"{PROMPT_VERSION}; {CARD.task(name).protocol}"


def _generate_config(name: str) -> GenerateConfig:
    """The task's decoding, from the eval card (the same settings every harness uses)."""
    settings = generation(name)
    return GenerateConfig(temperature=settings.temperature, top_p=settings.top_p, max_tokens=settings.max_new_tokens)


def _judge_record(
    judge_model: str | None, judge_base_url: str | None, data_dir: str | None, run_settings: Settings
) -> dict[str, str]:
    """The judge the settings name, for the log (nothing for a run that will not judge).

    A command line that will score and whose judge settings cannot work (e.g. no key and no
    base URL) stops here, before anything runs. Where the flag cannot be told (the Python API)
    nothing is recorded when the settings cannot work: a scored sample then stops at
    ``judge_check``, before its generation, with the reason; an unscored one needs no judge.

    Raises:
        JudgeConfigError: the command line scores and the settings cannot work.
    """
    scores = cli_will_score()
    if scores is False:
        return {}
    if (grader := cli_grader()) is not None:
        if judge_model or judge_base_url:
            raise JudgeConfigError(
                "the judge is named twice: by the grader role and by the judge_model / judge_base_url task "
                "parameters; use one of them"
            )
        # Inspect binds the role before it builds the task: a command line that scores checks
        # each grader now, so a broken one ends the run as a broken SIUO_JUDGE_* judge does.
        # Elsewhere (the Python API, a task built before the eval) the first sample's
        # judge_check checks it, before its generation.
        models = bound_graders()
        if scores and (graders := grader_judge(models)) is not None:
            check_graders_before_the_run(graders, models)
        return {"judge_role": "grader", "judge_model_requested": grader}
    try:
        settings = judge_config(judge_model, judge_base_url, run_settings=run_settings)
    except JudgeConfigError:
        if scores:
            raise
        return {}
    if scores:
        # One real judge call now, so a broken judge ends the run before any generation.
        check_judge_before_generation(settings, run_settings, data_dir)
    return {"judge_model_requested": settings.model, "judge_endpoint": settings.endpoint}


def _gen_task(name: str, data_dir: str | None, judge_model: str | None, judge_base_url: str | None) -> Task:
    """The open-ended task; the data is checked here, before any generation. The judge settings
    are checked only when the run will judge: Inspect builds the task (and its scorer) the same
    way with and without --no-score (see _judge_record and judge_check)."""
    # Early, so that after judge errors `inspect eval` ends non-zero once its log is written.
    exit_nonzero_if_judge_failed("inspect")
    run_settings = Settings.from_env()  # read once for the task's build: its data and its judge
    data = run_settings.data(data_dir)
    samples = [_sample(item, item.question, item.reference_answer) for item in data.gen]
    epochs = CARD.task(name).responses_per_item
    return Task(
        name=name,
        dataset=MemoryDataset(samples, name="siuo_gen"),
        setup=judge_check(judge_model=judge_model, judge_base_url=judge_base_url),
        solver=generate(),
        scorer=siuo_gen_judge(data_dir=data_dir, judge_model=judge_model, judge_base_url=judge_base_url),
        epochs=Epochs(epochs, siuo_vote()),
        config=_generate_config(name),
        metadata={
            **_judge_record(judge_model, judge_base_url, data_dir, run_settings),
            "judge_prompt_sha256": prompt_templates_sha256(),
            # --epochs N changes the count (the vote stays); the log's eval config records it.
            "protocol": _protocol(name),
        },
        version=task_version(name),
    )


@task
@plain_setup_errors
def siuo_gen(data_dir: str | None = None, judge_model: str | None = None, judge_base_url: str | None = None) -> Task:
    """Paper protocol: 3 sampled responses per item (epochs), each judged, majority vote per item.

    Args:
        data_dir: SIUO data folder (default: $SIUO_DATA_DIR, else the pinned hub snapshot).
        judge_model: judge model (default: $SIUO_JUDGE_MODEL, else the package default).
        judge_base_url: OpenAI-compatible judge URL (default: $SIUO_JUDGE_BASE_URL, else OpenAI).
    """
    return _gen_task("siuo_gen", data_dir, judge_model, judge_base_url)


@task
@plain_setup_errors
def siuo_gen_greedy(
    data_dir: str | None = None, judge_model: str | None = None, judge_base_url: str | None = None
) -> Task:
    """One greedy response per item, no vote: cheaper, not the paper's protocol.

    Args:
        data_dir: SIUO data folder (default: $SIUO_DATA_DIR, else the pinned hub snapshot).
        judge_model: judge model (default: $SIUO_JUDGE_MODEL, else the package default).
        judge_base_url: OpenAI-compatible judge URL (default: $SIUO_JUDGE_BASE_URL, else OpenAI).
    """
    return _gen_task("siuo_gen_greedy", data_dir, judge_model, judge_base_url)


def _mcq_task(name: str, samples: list[Sample], scorer: Scorer) -> Task:
    """A multiple-choice task: one generation per sample, the letter scored without a judge."""
    return Task(
        name=name,
        dataset=MemoryDataset(samples, name=name),
        solver=generate(),
        scorer=scorer,
        config=_generate_config(name),
        metadata={"protocol": _protocol(name)},
        version=task_version(name),
    )


@task
@plain_setup_errors
def siuo_mcq(data_dir: str | None = None) -> Task:
    """The same items as 4-option multiple choice (the authors' template); deterministic parsing.

    Args:
        data_dir: SIUO data folder (default: $SIUO_DATA_DIR, else the pinned hub snapshot).
    """
    data = Settings.from_env().data(data_dir)
    samples = [_sample(item, mcq_prompt(item.question, item.options), item.correct_option) for item in data.mcq]
    return _mcq_task(MCQ_TASK, samples, siuo_mcq_letter(data_dir=data_dir))


@task
@plain_setup_errors
def siuo_mcq_circular(data_dir: str | None = None) -> Task:
    """Each MCQ item asked once per rotation of its 4 options (CircularEval): an item counts as
    correct only when all 4 answers are right, so a model that leans on a letter scores 0.

    One sample per (item, rotation), id "<question_id>-<rotation>", item-major, so
    ``--limit 4k`` keeps k whole items (a cut item is counted in ``incomplete_items`` and left
    out of every figure).

    Args:
        data_dir: SIUO data folder (default: $SIUO_DATA_DIR, else the pinned hub snapshot).
    """
    data = Settings.from_env().data(data_dir)
    samples = [
        _sample(
            item,
            question.prompt(),
            question.gold,
            sample_id=circular_sample_id(item.question_id, question.rotation),
            rotation=question.rotation,
        )
        for item in data.mcq
        for question in rotations(item)
    ]
    return _mcq_task(CIRCULAR_TASK, samples, siuo_circular_letter(data_dir=data_dir))
