"""The Inspect register entry (siuo_task/adapters/inspect_ai/eval.yaml) restates the eval card
(configs/eval_card.yaml): the same tasks, versions, title and arXiv link, samples per task that
match how the Inspect tasks build their datasets, and both files shipped with the package. Every
harness's task definitions decode as the card's generation settings say."""

from __future__ import annotations

import fnmatch
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from siuo_task.benchmark.card import CARD, GenerationSettings, generation

REPO = Path(__file__).resolve().parent.parent
EVAL_YAML = REPO / "siuo_task" / "adapters" / "inspect_ai" / "eval.yaml"
ADAPTERS = ("lmms_eval", "lm_eval", "inspect_ai", "vlmevalkit")

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: tomllib arrived in 3.11
    tomllib = pytest.importorskip("tomli")


class _TaskYamlLoader(yaml.SafeLoader):
    """Reads a harness task YAML without importing its ``!function`` hooks."""


_TaskYamlLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))  # type: ignore[arg-type]


def _task_yaml(adapter: str, task: str) -> dict[str, Any]:
    path = REPO / "siuo_task" / "adapters" / adapter / "tasks" / "siuo" / f"{task}.yaml"
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_TaskYamlLoader)


def _decoding(kwargs: dict[str, Any], max_tokens_key: str) -> GenerationSettings:
    return GenerationSettings(kwargs["temperature"], kwargs[max_tokens_key], kwargs.get("top_p"))


@pytest.mark.parametrize(("adapter", "max_tokens_key"), [("lmms_eval", "max_new_tokens"), ("lm_eval", "max_gen_toks")])
def test_harness_task_yamls_decode_as_the_card_says(adapter: str, max_tokens_key: str) -> None:
    """The committed lmms-eval and lm-eval YAMLs carry each task's generation settings and
    responses per item from the card (regenerate them with scripts/gen_*_yaml.py when it changes)."""
    for name, card in CARD.tasks.items():
        task = _task_yaml(adapter, name)
        kwargs = task["generation_kwargs"]
        assert _decoding(kwargs, max_tokens_key) == card.generation, f"{adapter} {name}"
        assert kwargs["do_sample"] is card.generation.sampled, f"{adapter} {name}"
        if card.kind == "gen":
            assert task.get("repeats", 1) == card.responses_per_item, f"{adapter} {name}"
    assert generation("siuo_gen") == GenerationSettings(temperature=1.0, max_new_tokens=500, top_p=1.0)
    assert generation("siuo_mcq") == GenerationSettings(temperature=0.0, max_new_tokens=32)


def test_protocol_lines_state_the_generation_settings() -> None:
    """A protocol line that names a temperature or a token limit (it is printed with the results)
    names the task's own."""
    for name, card in CARD.tasks.items():
        for temperature in re.findall(r"temperature (\d+(?:\.\d+)?)", card.protocol):
            assert float(temperature) == card.generation.temperature, name
        for tokens in re.findall(r"max (\d+) new tokens", card.protocol):
            assert int(tokens) == card.generation.max_new_tokens, name
    assert "temperature 1.0" in CARD.task("siuo_gen").protocol


def test_inspect_tasks_decode_as_the_card_says(small_data_dir: Path) -> None:
    pytest.importorskip("inspect_ai")
    from siuo_task.adapters.inspect_ai.tasks import siuo_gen, siuo_gen_greedy, siuo_mcq, siuo_mcq_circular

    for factory in (siuo_gen, siuo_gen_greedy, siuo_mcq, siuo_mcq_circular):
        task = factory(data_dir=str(small_data_dir))
        card = CARD.task(task.name)
        config = task.config
        assert GenerationSettings(config.temperature, config.max_tokens, config.top_p) == card.generation, task.name
        assert task.epochs == card.responses_per_item or card.kind != "gen", task.name


def test_vlmevalkit_samples_gen3_as_the_card_says() -> None:
    from siuo_task.adapters.vlmevalkit.names import GEN_PAPER, TASK_OF_DATASET
    from siuo_task.adapters.vlmevalkit.sampling import PAPER_TEMPERATURE

    assert TASK_OF_DATASET[GEN_PAPER] == "siuo_gen"
    assert PAPER_TEMPERATURE == generation("siuo_gen").temperature


@pytest.fixture(scope="module")
def entry() -> dict[str, Any]:
    return yaml.safe_load(EVAL_YAML.read_text(encoding="utf-8"))


def test_eval_yaml_has_inspect_evals_fields(entry: dict[str, Any]) -> None:
    assert {"title", "description", "arxiv", "group", "contributors", "version", "tasks"} <= set(entry)
    assert all({"name", "dataset_samples"} <= set(task) for task in entry["tasks"])


def test_eval_yaml_agrees_with_the_card(entry: dict[str, Any]) -> None:
    assert entry["title"] == CARD.title
    assert entry["description"] == CARD.description
    assert entry["arxiv"] == CARD.paper["arxiv"]
    assert [task["name"] for task in entry["tasks"]] == list(CARD.tasks)
    assert {task["name"]: task["version"] for task in entry["tasks"]} == {
        name: card.version for name, card in CARD.tasks.items()
    }
    # The eval's one version is that of its headline task, the paper's protocol.
    assert entry["version"] == CARD.task("siuo_gen").version


def test_dataset_samples_are_items_times_samples_per_item(entry: dict[str, Any]) -> None:
    """One sample per item, except circular MCQ: one per item and rotation (the generation
    tasks' repeated responses are epochs, not samples)."""
    per_item = {"gen": 1, "mcq": 1, "mcq_circular": 4}
    expected = {name: CARD.items * per_item[card.kind] for name, card in CARD.tasks.items()}
    assert {task["name"]: task["dataset_samples"] for task in entry["tasks"]} == expected
    assert expected["siuo_mcq_circular"] == 668


def test_inspect_tasks_carry_the_card_names_versions_and_sample_counts(
    entry: dict[str, Any], small_data_dir: Path
) -> None:
    pytest.importorskip("inspect_ai")
    from siuo_task.adapters.inspect_ai.tasks import siuo_gen, siuo_gen_greedy, siuo_mcq, siuo_mcq_circular

    factories = {
        "siuo_gen": siuo_gen,
        "siuo_gen_greedy": siuo_gen_greedy,
        "siuo_mcq": siuo_mcq,
        "siuo_mcq_circular": siuo_mcq_circular,
    }
    assert set(factories) == {task["name"] for task in entry["tasks"]}
    small_items = len(yaml.safe_load((small_data_dir / "siuo_gen.json").read_text(encoding="utf-8")))
    for declared in entry["tasks"]:
        task = factories[declared["name"]](data_dir=str(small_data_dir))
        assert task.name == declared["name"]
        assert str(task.version) == declared["version"]
        # The fixture is not the 167 items: check the samples per item instead of the count.
        assert len(task.dataset) * CARD.items == declared["dataset_samples"] * small_items


def test_package_data_ships_eval_yaml_and_the_adapter_readmes() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    package_data: dict[str, list[str]] = pyproject["tool"]["setuptools"]["package-data"]

    def shipped(package: str, name: str) -> bool:
        patterns = package_data.get(package, []) + package_data.get("*", [])
        return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)

    files = [(f"siuo_task.adapters.{adapter}", "README.md") for adapter in ADAPTERS]
    files.append(("siuo_task.adapters.inspect_ai", "eval.yaml"))
    for package, name in files:
        assert (REPO / Path(*package.split("."))).joinpath(name).is_file(), f"{package}/{name} is missing"
        assert shipped(package, name), f"pyproject.toml's package data does not ship {package}/{name}"
