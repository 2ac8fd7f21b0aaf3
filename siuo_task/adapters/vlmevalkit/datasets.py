"""VLMEvalKit dataset classes for SIUO; they translate, siuo_task's core scores.

Rows come from siuo_task's own loader (SIUO_DATA_DIR or the pinned hub snapshot), so there is
no TSV download. The generation dataset repeats each item once per response the protocol
needs (3 for the paper, 1 for the single-response variant) with ``question_id`` and
``repeat`` columns, so VLMEvalKit's ordinary one-prediction-per-row loop yields all responses.
``force_use_dataset_prompt`` keeps model classes from rewriting the SIUO prompt.

Judging uses SIUO_JUDGE_* (the one judge configuration), or the model VLMEvalKit's ``--judge``
names (``judge.py``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
from vlmeval.dataset.image_base import ImageBaseDataset
from vlmeval.smp import dump, load
from vlmeval.smp.file import get_intermediate_file_path

from siuo_task.adapters.vlmevalkit.judge import say_judge, vlmeval_judge
from siuo_task.adapters.vlmevalkit.names import GEN_PAPER, GEN_SINGLE, MCQ, MCQ_CIRCULAR, TASK_OF_DATASET
from siuo_task.adapters.vlmevalkit.reader import read_predictions
from siuo_task.harness.api import (
    CARD,
    CIRCULAR_ACCURACY,
    GEN_HEADLINE,
    MCQ_REDUCERS,
    RECORD_KEY,
    AnyJudge,
    Settings,
    answer_rotation,
    check_judge_before_generation,
    cli_option,
    end_on_interrupt,
    fail_plainly,
    group_items,
    item_counts,
    judge_responses,
    match_items,
    mcq_item_values,
    mcq_prompt,
    reduce_values,
    report_judge_errors,
    rotate,
    rotations,
    score_mcq_item,
    summarise,
    task_version,
    write_outputs,
)

logger = logging.getLogger(__name__)

PRIMARY = "Safe (overall)"
# Items whose judging failed, by predictions file, for VLMEvalKit's run summary (one process).
_JUDGE_FAILED: dict[str, int] = {}


def _message(image_path: str, text: str) -> list[dict[str, str]]:
    return [{"type": "image", "value": image_path}, {"type": "text", "value": text}]


def _judge(judge_kwargs: dict[str, Any] | None = None) -> AnyJudge:
    """The run's judge (SIUO_JUDGE_*, the panel SIUO_JUDGE_PANEL names, or --judge's model),
    saying which --judge chose."""
    config, chosen = vlmeval_judge(judge_kwargs)
    say_judge(chosen)
    if chosen is None and judge_kwargs and judge_kwargs.get("model"):
        logger.info(
            "SIUO is judged with SIUO_JUDGE_* / SIUO_JUDGE_PANEL settings (the paper's prompts, with the image); "
            "VLMEvalKit's "
            "default judge %r is not used (give --judge to choose the judge)",
            judge_kwargs["model"],
        )
    return config


class LimitCountsItems:
    """``--limit N`` counts items, each with all its rows. VLMEvalKit's inference keeps the first
    N rows (``dataset.data = dataset.data.iloc[:N]`` in vlmeval/inference.py); where an item has
    several rows (its responses, its option rotations), N rows would cut the last item short and
    leave N / rows-per-item items. A prefix of the rows assigned to ``data`` is widened to the
    first N items with every row of each."""

    _rows: Any = None  # VLMEvalKit sets None to release a dataset's memory

    @property
    def data(self) -> pd.DataFrame:
        return self._rows

    @data.setter
    def data(self, rows: Any) -> None:
        full = self._rows
        if (
            isinstance(rows, pd.DataFrame)
            and isinstance(full, pd.DataFrame)
            and 0 < len(rows) < len(full)
            and rows.index.equals(full.index[: len(rows)])
        ):
            items = list(dict.fromkeys(full["question_id"]))[: len(rows)]
            rows = full[full["question_id"].isin(items)]
            logger.info("SIUO: --limit %d counts items: %d item(s), %d row(s)", len(items), len(items), len(rows))
        self._rows = rows


class SiuoDataset(LimitCountsItems, ImageBaseDataset):
    """What every SIUO dataset class is: image datasets whose prompt no model class may rewrite,
    ``--limit`` counting items, serving the dataset names in ``DATASETS``."""

    MODALITY = "IMAGE"
    force_use_dataset_prompt = True
    DATASETS: tuple[str, ...] = ()

    @classmethod
    def supported_datasets(cls) -> list[str]:
        return list(cls.DATASETS)


class SiuoGenDataset(SiuoDataset):
    """Open-ended SIUO: one row per (item, response number)."""

    TYPE = "VQA"
    DATASETS = (GEN_PAPER, GEN_SINGLE)

    @fail_plainly
    def load_data(self, dataset: str) -> pd.DataFrame:
        """One row per (item, response number); a run that will judge (every --mode but infer)
        checks its judge here, when VLMEvalKit builds the dataset, before any inference."""
        if (cli_option("--mode") or "all") != "infer":
            check_judge_before_generation(_judge(), Settings.from_env())
        repeats = CARD.task(TASK_OF_DATASET[dataset]).responses_per_item
        rows = [
            {
                "index": item.question_id * 10 + repeat,
                "question_id": item.question_id,
                "repeat": repeat,
                "image_path": str(item.image_path),
                "question": item.question,
                "category": item.category,
                "safety_warning": item.safety_warning,
                "answer": item.reference_answer,
            }
            for item in Settings.from_env().data().gen
            for repeat in range(repeats)
        ]
        return pd.DataFrame(rows)

    def build_prompt(self, line: Any) -> list[dict[str, str]]:
        if isinstance(line, int):
            line = self.data.iloc[line]
        return _message(str(line["image_path"]), str(line["question"]))

    @end_on_interrupt
    def evaluate(self, eval_file: str, **judge_kwargs: Any) -> dict[str, Any]:
        """Judge every response with the paper protocol; write the score file and our results."""
        config, settings = _judge(judge_kwargs), Settings.from_env()
        data = settings.data()
        pairs = match_items(read_predictions(Path(eval_file), data), data)
        results, values = judge_responses(pairs, config, Path(eval_file), settings.reasoning)
        summary = results.to_dict()
        _write_ours(eval_file, self.dataset_name, summary, values)
        per_item = [item_counts(value) for value in values]
        _JUDGE_FAILED[str(Path(eval_file).resolve())] = sum(1 for item in per_item if item.errors)
        report_judge_errors(self.dataset_name, per_item, cli_option("--work-dir") or "outputs")
        # "overall" in the first key makes VLMEvalKit's run summary pick Safe as the primary metric.
        scores = {
            PRIMARY: results.rate("safe_rate"),
            "Effective": results.rate("effective_rate"),
            "Safe & Effective": results.rate("safe_effective_rate"),
            "judge_errors": results.metrics.get("judge_errors"),
            "items": results.n_items,
        }
        dump(pd.DataFrame([scores]), get_intermediate_file_path(eval_file, "_score", "csv"))
        return scores

    @classmethod
    def report_judge_err(
        cls,
        prediction_file: str | Path | None,
        *,
        total_samples: int | None,
        judge_model: str | None = None,
        error_message: str | None = None,
    ) -> dict[str, int | None]:
        """For VLMEvalKit's run summary: the items whose judging failed in this run (VLMEvalKit's
        own count looks for its judge's failure markers, which our judge never writes)."""
        failed = _JUDGE_FAILED.get(str(Path(prediction_file).resolve())) if prediction_file else None
        if failed is None:
            failed = total_samples or 0 if error_message else 0
        return {"failed": failed, "total": total_samples}

    @classmethod
    def report_primary_metric(cls, metrics: dict[str, Any] | None) -> dict[str, float | int]:
        """Safe is the primary metric when it exists; when no item could be judged there is none
        (never the item count in its place)."""
        value = (metrics or {}).get(PRIMARY)
        return {PRIMARY: value} if isinstance(value, (int, float)) and not isinstance(value, bool) else {}


class SiuoMcqDataset(SiuoDataset):
    """Multiple-choice SIUO with the authors' template; the letter is parsed deterministically.

    ``SafeInputsUnsafeOutput_MCQ``: one row per item, options as published.
    ``SafeInputsUnsafeOutput_MCQCircular``: one row per (item, rotation of its options), with a
    ``rotation`` column; see siuo_task.benchmark.circular.
    """

    TYPE = "MCQ"
    DATASETS = (MCQ, MCQ_CIRCULAR)

    def load_data(self, dataset: str) -> pd.DataFrame:
        circular = dataset == MCQ_CIRCULAR
        rows = []
        for item in Settings.from_env().data().mcq:
            for question in rotations(item) if circular else [rotate(item, 0)]:
                rotation_column = {"rotation": question.rotation} if circular else {}
                rows.append(
                    {
                        "index": question.question_id * 10 + question.rotation if circular else question.question_id,
                        "question_id": question.question_id,
                        **rotation_column,
                        "image_path": str(item.image_path),
                        "question": item.question,
                        "category": item.category,
                        **dict(question.options),
                        "answer": question.gold,
                    }
                )
        return pd.DataFrame(rows)

    def build_prompt(self, line: Any) -> list[dict[str, str]]:
        if isinstance(line, int):
            line = self.data.iloc[line]
        options = {letter: str(line[letter]) for letter in "ABCD"}
        return _message(str(line["image_path"]), mcq_prompt(str(line["question"]), options))

    def evaluate(self, eval_file: str, **judge_kwargs: Any) -> dict[str, Any]:
        """Accuracy and the unparsed rate; circular: circular accuracy, letter use and baselines,
        with one samples line per item holding its 4 answers."""
        items = {item.question_id: item for item in Settings.from_env().data().mcq}
        answered = [
            (items[int(row["question_id"])], row, "" if pd.isna(row["prediction"]) else str(row["prediction"]))
            for row in load(eval_file).to_dict("records")
        ]
        if self.dataset_name == MCQ_CIRCULAR:
            answers = [
                answer_rotation(rotate(item, int(row["rotation"])), response) for item, row, response in answered
            ]
            summary = {**summarise(answers).to_dict(), "input": str(eval_file)}
            values = [{RECORD_KEY: record.to_dict()} for record in group_items(answers)[0]]
            scores = {CIRCULAR_ACCURACY: summary[CIRCULAR_ACCURACY], "unparsed_rate": summary["unparsed_rate"]}
            scores.update({f"chosen_{k}": v for k, v in summary["chosen_letters_percent"].items()})
        else:
            values = [mcq_item_values(score_mcq_item(item, response)) for item, _, response in answered]
            summary = {**reduce_values(values, MCQ_REDUCERS), "n_items": len(values), "input": str(eval_file)}
            scores = {"accuracy": summary.get("accuracy"), "unparsed_rate": summary.get("unparsed_rate")}
        _write_ours(eval_file, self.dataset_name, summary, values)
        dump(pd.DataFrame([scores]), get_intermediate_file_path(eval_file, "_score", "csv"))
        return scores


def _write_ours(eval_file: str, dataset: str, summary: dict[str, Any], values: list[dict[str, Any]]) -> None:
    """results.json and samples.jsonl beside the predictions, in the lmms-eval path's schema, with
    the eval-card task and its version (VLMEvalKit keeps no task versions of its own)."""
    task = TASK_OF_DATASET[dataset]
    summary = {**summary, "task": task, "task_version": task_version(task)}
    stem = Path(eval_file).stem
    write_outputs(Path(eval_file).parent, summary, values, prefix=f"{stem}_siuo_")
    shown = (*GEN_HEADLINE, "accuracy", CIRCULAR_ACCURACY)
    logger.info("SIUO results: %s", json.dumps({k: summary.get(k) for k in shown if k in summary}))
