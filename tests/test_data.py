"""The loader: real items load; every kind of bad input names its culprit."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from siuo_task.benchmark.categories import KNOWN_CATEGORIES
from siuo_task.benchmark.data import load_siuo
from siuo_task.errors import DataError
from siuo_task.settings import Settings
from tests.helpers.cli_runs import siuo_eval


@pytest.fixture
def data_dir(small_data_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the small fixture that a test may break."""
    return Path(shutil.copytree(small_data_dir, tmp_path / "data"))


def _edit(path: Path, change) -> None:
    rows = json.loads(path.read_text())
    change(rows)
    path.write_text(json.dumps(rows))


def test_loads_all_167_real_items(full_data_dir: Path) -> None:
    data = load_siuo(full_data_dir)
    assert len(data.gen) == len(data.mcq) == 167
    assert len({item.question_id for item in data.gen}) == 167
    assert {item.category for item in data.gen} == set(KNOWN_CATEGORIES)
    golds = [item.correct_option for item in data.mcq]
    assert {letter: golds.count(letter) for letter in "ABCD"} == {"A": 51, "B": 35, "C": 34, "D": 47}
    assert all(item.image_path.is_file() for item in data.gen)


def test_data_dir_from_environment(small_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIUO_DATA_DIR", str(small_data_dir))
    assert len(Settings.from_env().data().gen) == 18


def test_missing_folder_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"does-not-exist.*does not exist"):
        load_siuo(tmp_path / "does-not-exist")


def test_missing_image_names_item_file_and_where_to_get_it(data_dir: Path) -> None:
    (data_dir / "images" / "S-01.png").unlink()
    with pytest.raises(DataError, match=r"item 1001: image 'S-01.png' not found .*sinwang/SIUO"):
        load_siuo(data_dir)


def test_corrupt_image_names_item(data_dir: Path) -> None:
    image = data_dir / "images" / "S-02.png"
    image.write_bytes(image.read_bytes()[:40])
    with pytest.raises(DataError, match=r"item 1002: image 'S-02.png' .*cannot be decoded"):
        load_siuo(data_dir)


def test_missing_field_names_item_and_field(data_dir: Path) -> None:
    _edit(data_dir / "siuo_gen.json", lambda rows: rows[3].pop("safety_warning"))
    with pytest.raises(DataError, match=r"siuo_gen.json: item \d+: missing field 'safety_warning'"):
        load_siuo(data_dir)


def test_wrong_type_names_field(data_dir: Path) -> None:
    _edit(data_dir / "siuo_mcqa.json", lambda rows: rows[0].__setitem__("question_id", "1001"))
    with pytest.raises(DataError, match=r"field 'question_id' is str, expected int"):
        load_siuo(data_dir)


def test_duplicate_id_names_both_items(data_dir: Path) -> None:
    _edit(data_dir / "siuo_gen.json", lambda rows: rows[1].__setitem__("question_id", rows[0]["question_id"]))
    with pytest.raises(DataError, match=r"siuo_gen.json: item 1001: duplicate question_id 1001 \(also item #0\)"):
        load_siuo(data_dir)


def test_gen_and_mcq_must_agree_on_ids(data_dir: Path) -> None:
    _edit(data_dir / "siuo_mcqa.json", lambda rows: rows.pop())
    with pytest.raises(DataError, match=r"siuo_gen.json: item \d+ has no counterpart in siuo_mcqa.json"):
        load_siuo(data_dir)


def test_bad_mcq_options_are_named(data_dir: Path) -> None:
    def change(rows: list[dict]) -> None:
        rows[0]["options"].pop("D")
        rows[1]["correct_option"] = "E"

    _edit(data_dir / "siuo_mcqa.json", change)
    with pytest.raises(DataError) as caught:
        load_siuo(data_dir)
    message = str(caught.value)
    assert "item 1001: field 'options' has keys ['A', 'B', 'C'], expected ['A', 'B', 'C', 'D']" in message
    assert "field 'correct_option' is 'E', not one of its options" in message


def test_invalid_json_names_file(data_dir: Path) -> None:
    (data_dir / "siuo_gen.json").write_text("[{")
    with pytest.raises(DataError, match=r"siuo_gen.json' is not valid UTF-8 JSON"):
        load_siuo(data_dir)


def test_missing_item_file_names_it(data_dir: Path) -> None:
    (data_dir / "siuo_mcqa.json").unlink()
    with pytest.raises(DataError, match=r"missing SIUO item file '.*siuo_mcqa.json'"):
        load_siuo(data_dir)


def test_unknown_category_warns_but_loads(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("siuo_gen.json", "siuo_mcqa.json"):
        _edit(data_dir / name, lambda rows: rows[0].__setitem__("category", "astrology"))
    with caplog.at_level(logging.WARNING, logger="siuo_task.benchmark.data"):
        data = load_siuo(data_dir)
    assert data.gen[0].category == "astrology"
    assert "siuo_gen.json: item 1001: category 'astrology' is not one of the 9 SIUO domains" in caplog.text


def test_every_problem_is_reported_at_once(data_dir: Path) -> None:
    for name in ("S-01.png", "S-02.png"):
        (data_dir / "images" / name).unlink()
    with pytest.raises(DataError, match=r"\(2 problem\(s\)\)") as caught:
        load_siuo(data_dir)
    assert "S-01.png" in str(caught.value) and "S-02.png" in str(caught.value)


def test_five_problems_of_every_stage_are_listed_in_one_check(data_dir: Path) -> None:
    """A missing field, an unknown category, a missing image, a gold letter that is no option and
    an MCQ item with no open-ended twin: one `siuo-eval check` names all five."""

    gen_rows = json.loads((data_dir / "siuo_gen.json").read_text())
    mcq_rows = json.loads((data_dir / "siuo_mcqa.json").read_text())
    del gen_rows[0]["safety_warning"]
    gen_rows[1]["category"] = "astrology"
    mcq_rows[1]["category"] = "astrology"
    (data_dir / "images" / gen_rows[2]["image"]).unlink()
    mcq_rows[3]["correct_option"] = "E"
    orphan = gen_rows.pop(4)
    (data_dir / "siuo_gen.json").write_text(json.dumps(gen_rows))
    (data_dir / "siuo_mcqa.json").write_text(json.dumps(mcq_rows))
    proc = siuo_eval("check", "--data-dir", data_dir, "--skip-judge")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "(4 problem(s))" in proc.stderr
    assert f"item {gen_rows[0]['question_id']}: missing field 'safety_warning'" in proc.stderr
    assert f"item {gen_rows[1]['question_id']}: category 'astrology' is not one of the 9 SIUO domains" in proc.stderr
    assert f"item {gen_rows[2]['question_id']}: image '{gen_rows[2]['image']}' not found" in proc.stderr
    assert f"item {mcq_rows[3]['question_id']}: field 'correct_option' is 'E', not one of its options" in proc.stderr
    assert f"siuo_mcqa.json: item {orphan['question_id']} has no counterpart in siuo_gen.json" in proc.stderr
