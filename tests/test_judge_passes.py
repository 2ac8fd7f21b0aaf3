"""`siuo-eval judge --judge-passes K`: K askings of every judge request, against a loopback judge whose
verdicts flip at random (seeded, per kind, response and pass). The flip rates and per-pass Safe rates in
results.json are recomputed here from what the server said it meant; pass 1 is a normal run (same
cache keys, same outputs); a rerun takes every pass from the cache."""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from siuo_task.judge.cache import cache_key
from tests.helpers.cli_runs import authors_rows, judge_env, read_run, write_json
from tests.helpers.in_process import siuo_eval_in_process
from tests.helpers.judge_server import JudgeServer, seeded_flips

PASSES = 3
ROWS = authors_rows(count_per_category=2, responses=3, tag="passes ")
REQUESTS = len(ROWS) * 3 * 2  # items x responses x (safety, effectiveness)


@pytest.fixture(scope="module")
def flipping(small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One K=3 judging of ROWS, cache on, against a judge that flips 30% of later askings."""
    root = tmp_path_factory.mktemp("passes")
    source = write_json(root / "authors.json", ROWS)
    with JudgeServer(declines=False, reply_for=seeded_flips(0.3, seed=7)) as server:
        env = judge_env(small_data_dir, server.base_url, root / "cache.sqlite3")
        proc = siuo_eval_in_process("judge", source, "--output", root / "k3", "--judge-passes", str(PASSES), env=env)
        assert proc.returncode == 0, proc.stderr
        yield {"server": server, "env": env, "source": source, "root": root, "proc": proc}


def _said(server: JudgeServer) -> dict[tuple[str, str], dict[int, Any]]:
    """What the server meant, per (kind, response), per asking (its attempt number)."""
    said: dict[tuple[str, str], dict[int, Any]] = defaultdict(dict)
    for exchange in server.log.exchanges + server.log.probes:
        said[(exchange.kind, exchange.response)][exchange.attempt] = exchange.intended
    return said


def test_flip_rates_are_what_the_server_did(flipping: dict[str, Any]) -> None:
    said = _said(flipping["server"])
    assert len(said) == REQUESTS and all(set(asked) == {1, 2, 3} for asked in said.values())
    results, _ = read_run(flipping["root"] / "k3")
    assert results["judge_passes"] == PASSES
    for kind in ("safety", "effectiveness"):
        verdicts = [list(asked.values()) for (k, _), asked in said.items() if k == kind]
        flipped = sum(1 for v in verdicts if len(set(v)) > 1)
        assert 0 < flipped < len(verdicts), "the script should flip some verdicts and not all"
        assert results[f"{kind}_flip_rate"] == round(100 * flipped / len(verdicts), 2)
        assert results["flip_rate_responses"][kind] == {
            "compared": len(verdicts),
            "flipped": flipped,
            "left_out_judge_error": 0,
        }


def test_safe_rate_of_each_pass_is_recomputed_from_its_verdicts(flipping: dict[str, Any]) -> None:
    said = _said(flipping["server"])
    results, samples = read_run(flipping["root"] / "k3")
    expected = []
    for asking in range(1, PASSES + 1):
        safe_items = 0
        for row in ROWS:
            votes = [said[("safety", response)][asking] for response in row["responses"]]
            safe_items += sum(votes) * 2 > len(votes)
        expected.append(round(100 * safe_items / len(ROWS), 4))
    assert results["safe_rate_passes"] == expected
    assert len(set(expected)) > 1, "the flips should move the Safe rate in some pass"
    assert results["safe_rate"] == expected[0], "the headline is pass 1"
    # The samples keep each response's verdict in every pass.
    first = samples[0]["siuo"]["responses"][0]
    assert [p["safety"] for p in first["verdicts_per_pass"]] == [
        said[("safety", first["response"])][asking] for asking in range(1, PASSES + 1)
    ]
    assert results["usage"]["calls"] == PASSES * REQUESTS == results["judge_calls"]
    assert [usage["calls"] for usage in results["usage_passes"]] == [REQUESTS] * PASSES


def test_rerun_takes_every_pass_from_the_cache(flipping: dict[str, Any]) -> None:
    server = flipping["server"]
    before = len(server.log.exchanges) + len(server.log.probes)
    out = flipping["root"] / "k3-again"
    proc = siuo_eval_in_process(
        "judge", flipping["source"], "--output", out, "--judge-passes", str(PASSES), env=flipping["env"]
    )
    assert proc.returncode == 0, proc.stderr
    assert len(server.log.exchanges) + len(server.log.probes) == before, "a cached pass called the judge"
    again, _ = read_run(out)
    first, _ = read_run(flipping["root"] / "k3")
    assert again["usage"]["calls"] == 0 and again["usage"]["cache_hits"] == PASSES * REQUESTS
    for key in ("safe_rate_passes", "safety_flip_rate", "effectiveness_flip_rate", "flip_rate_responses"):
        assert again[key] == first[key]


def test_pass_one_uses_the_cache_keys_of_a_run_without_passes(flipping: dict[str, Any]) -> None:
    server = flipping["server"]
    before = len(server.log.exchanges) + len(server.log.probes)
    out = flipping["root"] / "plain"
    proc = siuo_eval_in_process("judge", flipping["source"], "--output", out, env=flipping["env"])
    assert proc.returncode == 0, proc.stderr
    assert len(server.log.exchanges) + len(server.log.probes) == before
    plain, _ = read_run(out)
    first, _ = read_run(flipping["root"] / "k3")
    assert plain["usage"]["cache_hits"] == REQUESTS and plain["safe_rate"] == first["safe_rate_passes"][0]
    assert plain["judge_passes"] == 1 and "safe_rate_passes" not in plain


def _without_timing(value: Any) -> Any:
    if isinstance(value, dict):
        drop = {"started", "finished", "wall_seconds", "judge_wall_seconds"}
        return {k: _without_timing(v) for k, v in value.items() if k not in drop}
    if isinstance(value, (list, tuple)):
        return [_without_timing(v) for v in value]
    return value


def test_one_pass_is_a_run_without_the_flag(small_data_dir: Path, tmp_path: Path) -> None:
    source = write_json(tmp_path / "authors.json", ROWS)
    with JudgeServer() as server:  # the usual judge: every asking gets the same reply
        env = judge_env(small_data_dir, server.base_url, "off")
        plain = siuo_eval_in_process("judge", source, "--output", tmp_path / "plain", env=env)
        one = siuo_eval_in_process("judge", source, "--output", tmp_path / "one", "--judge-passes", "1", env=env)
    assert plain.returncode == one.returncode == 1, plain.stderr  # the usual judge declines a few
    assert _without_timing(read_run(tmp_path / "plain")) == _without_timing(read_run(tmp_path / "one"))
    assert plain.stdout == one.stdout


def test_declines_count_every_pass(small_data_dir: Path, tmp_path: Path) -> None:
    """The usual judge declines the same texts on every asking: the top-level judge_declines and
    the usage block count every pass's, and each pass's stay in usage_passes."""
    source = write_json(tmp_path / "authors.json", ROWS)
    with JudgeServer() as server:
        env = judge_env(small_data_dir, server.base_url, "off")
        proc = siuo_eval_in_process("judge", source, "--output", tmp_path / "k2", "--judge-passes", "2", env=env)
    assert proc.returncode == 1, proc.stderr  # the declined calls are judge errors
    results, _ = read_run(tmp_path / "k2")
    per_pass = [usage["declines"] for usage in results["usage_passes"]]
    assert per_pass[0] > 0 and per_pass[0] == per_pass[1]
    assert results["judge_declines"] == results["usage"]["declines"] == sum(per_pass)
    assert results["judge_errors_passes"][0] == results["judge_errors"]  # the headline stays pass 1


def test_dry_run_counts_every_pass(small_data_dir: Path, tmp_path: Path) -> None:
    source = write_json(tmp_path / "authors.json", ROWS)
    env = judge_env(small_data_dir, "http://127.0.0.1:9/v1", "off")
    proc = siuo_eval_in_process(
        "judge", source, "--output", tmp_path / "out", "--dry-run", "--judge-passes", "4", env=env
    )
    assert proc.returncode == 0, proc.stderr
    total = next(line for line in proc.stdout.splitlines() if line.startswith("TOTAL"))
    requests, coalesced, cached, calls = map(int, total.split()[1:5])
    assert (requests, coalesced, cached, calls) == (4 * REQUESTS, 0, 0, 4 * REQUESTS)


def test_bad_pass_count_is_refused(small_data_dir: Path, tmp_path: Path) -> None:
    env = judge_env(small_data_dir, "http://127.0.0.1:9/v1", "off")
    proc = siuo_eval_in_process("judge", tmp_path, "--output", tmp_path / "out", "--judge-passes", "0", env=env)
    assert proc.returncode == 2 and re.search(r"--judge-passes: expected a whole number of passes", proc.stderr)


def test_later_passes_have_their_own_keys_and_the_first_keeps_its_key() -> None:
    fields = dict(model="m", endpoint="e", prompt="p", image_sha256="i", temperature=0.0, max_tokens=9)
    first = cache_key(**fields, prompt_version="v")
    assert cache_key(**fields, prompt_version="v", repeat=0) == first
    later = {cache_key(**fields, prompt_version="v", repeat=n) for n in (1, 2)}
    assert len(later) == 2 and first not in later
    assert json.dumps(sorted(later)) != json.dumps([first])


def test_sweep_with_errors_in_a_later_pass(small_data_dir: Path, tmp_path: Path) -> None:
    """Two runs, two passes; pass 2 gets some empty replies (judge errors): those responses are
    left out of the flip rates and counted, the exit status says a rerun is needed, and the
    leaderboard shows each run's Safe spread over the passes."""
    inputs = tmp_path / "sweep"
    for tag in ("one", "two"):
        write_json(inputs / f"{tag}.json", authors_rows(count_per_category=2, responses=3, tag=f"{tag} "))

    def empty_in_pass_two(kind: str, response: str, attempt: int) -> str | None:
        return "empty" if attempt == 2 and hash_share(kind, response) < 0.15 else None

    with JudgeServer(declines=False, reply_for=seeded_flips(0.3, seed=11), fault_for=empty_in_pass_two) as server:
        env = judge_env(small_data_dir, server.base_url, "off")
        proc = siuo_eval_in_process("judge", inputs, "--output", tmp_path / "out", "--judge-passes", "2", env=env)
        said = _said(server)
    assert proc.returncode == 1, proc.stderr
    assert "failed or gave no verdict" in proc.stderr
    board = json.loads((tmp_path / "out" / "leaderboard.json").read_text())["runs"]
    assert {row["run"] for row in board} == {"one", "two"}
    for row in board:
        results, _ = read_run(tmp_path / "out" / row["run"])
        mine = {key: asked for key, asked in said.items() if key[1].startswith(f"{row['run']} ")}
        errors = sum(1 for asked in mine.values() if None in asked.values())
        assert errors > 0 and results["judge_errors_passes"] == [0, errors]
        for kind in ("safety", "effectiveness"):
            complete = [
                list(asked.values()) for (k, _), asked in mine.items() if k == kind and None not in asked.values()
            ]
            flipped = sum(1 for v in complete if len(set(v)) > 1)
            left_out = sum(1 for (k, _), asked in mine.items() if k == kind and None in asked.values())
            assert results["flip_rate_responses"][kind] == {
                "compared": len(complete),
                "flipped": flipped,
                "left_out_judge_error": left_out,
            }
            assert results[f"{kind}_flip_rate"] == round(100 * flipped / len(complete), 2)
        passes = results["safe_rate_passes"]
        assert (row["judge_passes"], row["safe_rate_passes_min"], row["safe_rate_passes_max"]) == (
            2,
            min(passes),
            max(passes),
        )
    header = (tmp_path / "out" / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert {"safe_rate_passes_min", "safe_rate_passes_max", "safety_flip_rate"} <= set(header)


def hash_share(kind: str, response: str) -> float:
    digest = hashlib.sha256(f"empty\0{kind}\0{response}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
