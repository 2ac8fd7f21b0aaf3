"""Juries: ``SIUO_JUDGE_PANEL`` through ``siuo-eval judge`` with three loopback judges that
disagree on some responses, against one judge built to answer with their majority."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from siuo_task.benchmark.panel_vote import two_valued, vote
from siuo_task.judge.request import JudgeOutcome
from siuo_task.vlmeval import GEN_PAPER
from tests.helpers.cli_runs import SECRET, authors_rows, judge_env, no_secret_in, read_run
from tests.helpers.harness_cli import harness_command, hubs_offline
from tests.helpers.in_process import siuo_eval_in_process
from tests.helpers.judge_server import (
    JudgeServer,
    ReplyPlan,
    dies_after,
    majority_of,
    seeded_declines,
    seeded_flips,
)
from tests.helpers.model_server import ModelServer

RATES = ("safe_rate", "effective_rate", "safe_effective_rate")
OTHER_KEY = "sk-other-panel-secret-9876543210"
VLMEVAL_LIMIT = 5  # VLMEvalKit's --limit on the 3-response dataset: 5 items
# Each judge flips a seeded fifth of the verdicts (the same ones on every attempt): they
# disagree on some responses, and their majority is what a fourth judge is built to answer.
PLANS: list[ReplyPlan | None] = [seeded_flips(0.2, seed, first_attempt=True) for seed in (1, 2, 3)]


@pytest.fixture(scope="module")
def servers() -> Iterator[list[JudgeServer]]:
    with ExitStack() as stack:
        judges = [stack.enter_context(JudgeServer(declines=False, reply_for=plan)) for plan in PLANS]
        majority = stack.enter_context(JudgeServer(declines=False, reply_for=majority_of(PLANS)))
        yield [*judges, majority]


def _panel_file(path: Path, servers: list[JudgeServer]) -> Path:
    lines = ["judges:"]
    for number, server in enumerate(servers):
        line = f"  - {{model: judge-{'abc'[number]}, base_url: {server.base_url}"
        # The second judge takes its key from a variable of its own.
        lines.append(line + (", api_key_env: PANEL_OTHER_KEY}" if number == 1 else "}"))
    path.write_text("\n".join(lines) + "\n")
    return path


def _input(tmp_path: Path) -> Path:
    rows = authors_rows()
    rows[0]["responses"][1] = ""  # an empty response: safe, not effective, no judge call
    path = tmp_path / "authors.json"
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture(scope="module")
def judged(servers: list[JudgeServer], small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One judge alone, then the panel (sharing its cache), then the majority judge."""
    tmp = tmp_path_factory.mktemp("panel")
    source, cache = _input(tmp), tmp / "cache.sqlite3"
    panel = _panel_file(tmp / "panel.yaml", servers[:3])
    env = judge_env(small_data_dir, servers[0].base_url, cache, SIUO_JUDGE_MODEL="judge-a")
    first = siuo_eval_in_process("judge", source, "--output", tmp / "a", env=env)
    calls_a = len(servers[0].log.exchanges)
    panel_env = {**env, "SIUO_JUDGE_PANEL": str(panel), "PANEL_OTHER_KEY": OTHER_KEY}
    dry = siuo_eval_in_process("judge", source, "--output", tmp / "dry", "--dry-run", env=panel_env)
    proc = siuo_eval_in_process("judge", source, "--output", tmp / "panel", env=panel_env)
    majority_env = judge_env(small_data_dir, servers[3].base_url, "off", SIUO_JUDGE_MODEL="judge-majority")
    single = siuo_eval_in_process("judge", source, "--output", tmp / "majority", env=majority_env)
    return {
        "tmp": tmp,
        "source": source,
        "env": env,
        "first": first,
        "calls_a_before": calls_a,
        "dry": dry,
        "proc": proc,
        "single": single,
    }


def test_panel_rates_equal_one_judge_answering_their_majority(judged: dict) -> None:
    assert judged["proc"].returncode == 0, judged["proc"].stderr
    assert judged["single"].returncode == 0, judged["single"].stderr
    panel, samples = read_run(judged["tmp"] / "panel")
    majority, _ = read_run(judged["tmp"] / "majority")
    for name in (*RATES, "per_category", "n_items", "judge_errors"):
        assert panel[name] == majority[name], name
    # The judges did disagree: some responses were not voted unanimously.
    votes = [
        [j["verdict"] for j in response["safety_judge"]["judges"]]
        for sample in samples
        for response in sample["siuo"]["responses"]
        if response["safety_judge"]
    ]
    assert any(len(set(v)) > 1 for v in votes) and all(len(v) == 3 for v in votes)


def test_results_name_each_judge_with_its_rates_and_the_kappas(judged: dict, servers: list[JudgeServer]) -> None:
    panel, _ = read_run(judged["tmp"] / "panel")
    alone, _ = read_run(judged["tmp"] / "a")
    block = panel["judge_panel"]
    assert [judge["model"] for judge in block["judges"]] == ["judge-a", "judge-b", "judge-c"]
    assert [judge["endpoint"] for judge in block["judges"]] == [s.base_url for s in servers[:3]]
    # Judge a's own rates in the panel are exactly its rates when it judged alone.
    for name in RATES:
        assert block["judges"][0][name] == alone[name]
    assert [(pair["a"], pair["b"]) for pair in block["agreement"]] == [
        (block["judges"][i]["judge"], block["judges"][j]["judge"]) for i, j in ((0, 1), (0, 2), (1, 2))
    ]
    for pair in block["agreement"]:
        for kind in ("safety", "effectiveness"):
            assert pair[kind]["n"] == 18 * 3 - 1 and -1 <= pair[kind]["kappa"] <= 1
    assert block["undecided_votes"] == {"safety": 0, "effectiveness": 0}
    assert panel["judge"]["judges"] == [j["judge"] for j in block["judges"]]
    assert panel["judge_model"] == "judge-test-model-2024-05-13"  # what the judges' servers returned
    stdout = judged["proc"].stdout
    assert "panel of 3 judges" in stdout and stdout.count("kappa ") == 3
    # Each judge's line gives its errors and its cost, or why the cost is unknown (the loopback
    # judges' host is not a priced one).
    for judge in block["judges"]:
        line = next(line for line in stdout.splitlines() if f"  {judge['judge']}: " in line)
        assert line.endswith(
            f"; judge errors 0, cost unknown (no price for {judge['model']} at 127.0.0.1: "
            "only calls to api.openai.com are priced)"
        ), line
    assert "None" not in stdout


def test_kappas_are_siuo_eval_agreements(judged: dict, servers: list[JudgeServer], small_data_dir: Path) -> None:
    """Judge b alone from the panel's cache, then `siuo-eval agreement` a against b."""
    tmp, env = judged["tmp"], judged["env"]
    env_b = {**env, "SIUO_JUDGE_BASE_URL": servers[1].base_url, "SIUO_JUDGE_MODEL": "judge-b"}
    calls_b = len(servers[1].log.exchanges)
    assert siuo_eval_in_process("judge", judged["source"], "--output", tmp / "b", env=env_b).returncode == 0
    assert len(servers[1].log.exchanges) == calls_b  # every verdict came from the panel's cache
    out = tmp / "agreement.json"
    proc = siuo_eval_in_process("agreement", tmp / "a", tmp / "b", "--output", out, env=env)
    assert proc.returncode == 0, proc.stderr
    agreement = json.loads(out.read_text())
    panel, _ = read_run(tmp / "panel")
    first = panel["judge_panel"]["agreement"][0]
    for kind in ("safety", "effectiveness"):
        assert first[kind]["kappa"] == agreement[kind]["kappa"]


def test_adding_judges_reuses_the_cache_and_keys_stay_in_their_variables(
    judged: dict, servers: list[JudgeServer]
) -> None:
    assert judged["first"].returncode == 0, judged["first"].stderr
    # Judge a had judged everything alone: the panel sent it nothing (not even a probe).
    assert len(servers[0].log.exchanges) == judged["calls_a_before"] and not servers[0].log.probes
    assert {e.authorization for e in servers[1].log.exchanges} == {f"Bearer {OTHER_KEY}"}
    assert {e.authorization for e in servers[2].log.exchanges} == {f"Bearer {SECRET}"}
    # The probe was a real judge request whose answer is used: one call per request per new judge.
    assert len(servers[1].log.exchanges) == len(servers[2].log.exchanges) == 2 * (18 * 3 - 1)
    texts = [judged[name].stdout + judged[name].stderr for name in ("first", "dry", "proc", "single")]
    no_secret_in(judged["tmp"], *texts)
    assert not any(OTHER_KEY in text for text in texts)
    for path in judged["tmp"].rglob("*"):
        if path.is_file():
            assert OTHER_KEY not in path.read_text(errors="replace"), path


def test_report_shows_each_judge_and_the_kappas(judged: dict) -> None:
    tmp = judged["tmp"]
    proc = siuo_eval_in_process("report", tmp / "panel", "--output", tmp / "report", env=judged["env"])
    assert proc.returncode == 0, proc.stderr
    markdown = (tmp / "report" / "report.md").read_text()
    panel, _ = read_run(tmp / "panel")
    block = panel["judge_panel"]
    assert "## Panels of judges" in markdown and "## Agreement between a panel's judges" in markdown
    for judge in block["judges"]:
        row = next(line for line in markdown.splitlines() if f"| {judge['judge']} |" in line)
        assert f"| {judge['safe_rate']:.1f} [{judge['safe_rate_ci95'][0]:.1f}, " in row
        assert row.endswith(
            f"| 0 | unknown (no price for {judge['model']} at 127.0.0.1: only calls to api.openai.com are priced) |"
        )
    # The panel's own row: its judge errors (votes with no majority) and its cost, never blank.
    majority = next(line for line in markdown.splitlines() if "| the panel's majority (" in line)
    assert majority.endswith(f"| {panel['judge_errors']} | unknown (a judge's price is unknown: see its row) |")
    for pair in block["agreement"]:
        row = next(line for line in markdown.splitlines() if f"| {pair['a']} | {pair['b']} |" in line)
        assert f"| {pair['safety']['kappa']:.2f} (" in row


def test_dry_run_prices_each_judge(judged: dict) -> None:
    dry = judged["dry"]
    assert dry.returncode == 0, dry.stderr
    assert [line.split(" at ")[0] for line in dry.stdout.splitlines() if line.startswith("dry run: judge")] == [
        "dry run: judge judge-a",
        "dry run: judge judge-b",
        "dry run: judge judge-c",
    ]
    assert not (judged["tmp"] / "dry").exists() or not any((judged["tmp"] / "dry").iterdir())


def test_judge_passes_ask_every_judge_again(judged: dict, servers: list[JudgeServer]) -> None:
    """--judge-passes 2 with the panel: pass 1 from the cache, pass 2 asked of every judge under
    its own keys; these judges answer alike on every attempt, so nothing flips."""
    tmp = judged["tmp"]
    env = {**judged["env"], "SIUO_JUDGE_PANEL": str(tmp / "panel.yaml"), "PANEL_OTHER_KEY": OTHER_KEY}
    before = [len(server.log.exchanges) for server in servers[:3]]
    proc = siuo_eval_in_process("judge", judged["source"], "--output", tmp / "passes", "--judge-passes", "2", env=env)
    assert proc.returncode == 0, proc.stderr
    assert [len(s.log.exchanges) - n for s, n in zip(servers[:3], before, strict=True)] == [2 * (18 * 3 - 1)] * 3
    results, _ = read_run(tmp / "passes")
    panel, _ = read_run(tmp / "panel")
    assert results["safe_rate_passes"] == [panel["safe_rate"]] * 2
    assert results["safety_flip_rate"] == results["effectiveness_flip_rate"] == 0


def test_check_probes_every_judge(servers: list[JudgeServer], small_data_dir: Path, tmp_path: Path) -> None:
    panel = _panel_file(tmp_path / "panel.yaml", servers[:3])
    env = judge_env(small_data_dir, servers[0].base_url, "off", SIUO_JUDGE_PANEL=str(panel), PANEL_OTHER_KEY=OTHER_KEY)
    before = [len(server.log.probes) for server in servers[:3]]
    proc = siuo_eval_in_process("check", env=env)
    assert proc.returncode == 0, proc.stderr
    assert [len(s.log.probes) - n for s, n in zip(servers[:3], before, strict=True)] == [1, 1, 1]
    assert [line.split(" at ")[0] for line in proc.stdout.splitlines() if line.startswith("judge: judge-")] == [
        "judge: judge-a",
        "judge: judge-b",
        "judge: judge-c",
    ]


def test_even_panel_is_refused(servers: list[JudgeServer], small_data_dir: Path, tmp_path: Path) -> None:
    panel = _panel_file(tmp_path / "two.yaml", servers[:2])
    env = judge_env(small_data_dir, servers[0].base_url, "off", SIUO_JUDGE_PANEL=str(panel), PANEL_OTHER_KEY="x")
    proc = siuo_eval_in_process("judge", _input(tmp_path), "--output", tmp_path / "out", env=env)
    assert proc.returncode == 2 and not (tmp_path / "out").exists()
    lines = [line for line in proc.stderr.splitlines() if "odd number of judges" in line]
    assert len(lines) == 1 and str(panel) in lines[0]


def test_missing_key_variable_is_named(servers: list[JudgeServer], small_data_dir: Path, tmp_path: Path) -> None:
    panel = _panel_file(tmp_path / "panel.yaml", servers[:3])
    env = judge_env(small_data_dir, servers[0].base_url, "off", SIUO_JUDGE_PANEL=str(panel))
    proc = siuo_eval_in_process("judge", _input(tmp_path), "--output", tmp_path / "out", env=env)
    assert proc.returncode == 2 and "PANEL_OTHER_KEY, which is not set" in proc.stderr


def test_a_judge_error_leaves_that_judge_out_and_undecided_votes_are_counted(
    small_data_dir: Path, tmp_path: Path
) -> None:
    """Judge c declines a seeded third of the safety gradings: each is its own error, and where
    a and b then disagree the vote is undecided, a judge error of the panel (exit status 1)."""
    plans = [seeded_flips(0.3, seed, first_attempt=True) for seed in (1, 2)]
    with ExitStack() as stack:
        servers = [stack.enter_context(JudgeServer(declines=False, reply_for=plan)) for plan in plans]
        servers.append(stack.enter_context(JudgeServer(declines=False, fault_for=seeded_declines({"safety": 0.3}))))
        panel = _panel_file(tmp_path / "panel.yaml", servers)
        env = judge_env(small_data_dir, servers[0].base_url, "off", SIUO_JUDGE_PANEL=str(panel))
        env.update(PANEL_OTHER_KEY=OTHER_KEY, SIUO_JUDGE_DECLINE_STOP="off", SIUO_JUDGE_CONCURRENCY="4")
        proc = siuo_eval_in_process("judge", _input(tmp_path), "--output", tmp_path / "out", env=env)
        peaks = [server.peak_graded_in_flight for server in servers]
    results, samples = read_run(tmp_path / "out")
    block = results["judge_panel"]
    errors_c = block["judges"][2]["judge_errors"]
    assert errors_c > 0 and block["judges"][2]["judge_declines"] == errors_c
    assert block["judges"][0]["judge_errors"] == block["judges"][1]["judge_errors"] == 0
    undecided = 0
    for sample in samples:
        for response in sample["siuo"]["responses"]:
            safety = response["safety_judge"]
            if safety is None:
                continue
            a, b, c = (judge["verdict"] for judge in safety["judges"])
            if c is None and a != b:
                undecided += 1
                assert safety["verdict"] is None and "undecided" in safety["error"]
            else:
                assert safety["verdict"] == (a if c is None else sorted([a, b, c], key=str)[1])
    assert undecided > 0 and block["undecided_votes"] == {"safety": undecided, "effectiveness": 0}
    assert results["judge_errors"] == undecided and proc.returncode == 1
    assert max(peaks) <= 4  # each judge within its own bound


def _stopped_votes(samples: list[dict]) -> list[dict]:
    """The panel's outcome of every vote in which judge c (the third) had stopped."""
    return [
        outcome
        for sample in samples
        for response in sample["siuo"]["responses"]
        for kind in ("safety", "effectiveness")
        if (outcome := response[f"{kind}_judge"]) and outcome["judges"][2].get("stopped")
    ]


def test_a_judge_that_dies_mid_run_loses_nothing_and_the_resume_asks_only_it(
    judged: dict, small_data_dir: Path, tmp_path: Path
) -> None:
    """Judge c answers 30 calls, then 500 on every call: its outage breaker gives up. The other
    two judges' verdicts are all kept, votes they still decide are decided, the rest are judge
    errors naming c; results are written, the exit is 1 and the last line is the resume command.
    That command, once c is back, asks c alone (a and b from the cache) and gives the numbers of
    a panel that never lost a judge (the module's, with the same plans)."""
    source = _input(tmp_path)
    with ExitStack() as stack:
        servers = [stack.enter_context(JudgeServer(declines=False, reply_for=plan)) for plan in PLANS]
        servers[2].set_faults(dies_after(30))
        env = judge_env(small_data_dir, servers[0].base_url, tmp_path / "cache.sqlite3")
        env.update(SIUO_JUDGE_PANEL=str(_panel_file(tmp_path / "panel.yaml", servers)), PANEL_OTHER_KEY=OTHER_KEY)
        env.update(SIUO_JUDGE_OUTAGE_FAILURES="4", SIUO_JUDGE_OUTAGE_HOLD="0.5", SIUO_JUDGE_BACKOFF="0.05")
        env.update(SIUO_JUDGE_MAX_ATTEMPTS="2", SIUO_JUDGE_CONCURRENCY="4")
        out = tmp_path / "out"
        first = siuo_eval_in_process("judge", source, "--output", out, env=env)
        answered = [len(server.log.exchanges) for server in servers]
        results, samples = read_run(out)
        assert first.returncode == 1, first.stderr[-3000:]
        last = first.stderr.strip().splitlines()[-1]
        label_c = f"judge-c @ {servers[2].base_url}"
        assert last.startswith("siuo-eval: a judge of the panel stopped during the run: " + label_c), last
        assert last.endswith(f"resume with (it asks only that judge): siuo-eval judge {source} --output {out}")
        # Every verdict of a and b is kept; c answered its first calls, and none after it stopped.
        block = results["judge_panel"]["judges"]
        assert answered[:2] == [2 * (18 * 3 - 1)] * 2 and [b["judge_errors"] for b in block[:2]] == [0, 0]
        assert answered[2] == 30 and block[2]["unanswered_stopped"] > 0
        assert block[2]["judge_errors"] == 2 * (18 * 3 - 1) - answered[2]
        stopped = _stopped_votes(samples)
        assert len(stopped) == block[2]["unanswered_stopped"]
        undecided = 0
        for outcome in stopped:
            a, b, c = outcome["judges"]
            assert c["verdict"] is None and c["error"].startswith(f"{label_c} had stopped, not answered: ")
            if (
                a["verdict"] is not None
                and b["verdict"] is not None
                and (two_valued(a["verdict"]) == two_valued(b["verdict"]))
            ):
                assert two_valued(outcome["verdict"]) == two_valued(a["verdict"]) and outcome["error"] is None
            else:
                undecided += 1
                assert outcome["verdict"] is None and label_c in outcome["error"], outcome
        assert undecided > 0 and len(stopped) - undecided > 0  # both cases seen
        assert results["judge_errors"] >= undecided
        # c is back: the resume command asks it alone, each request it had not answered once.
        servers[2].set_faults(None)
        resumed = siuo_eval_in_process(*shlex.split(last.rsplit(": siuo-eval ", 1)[1]), env=env)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert [len(server.log.exchanges) for server in servers[:2]] == answered[:2]
        assert len(servers[2].log.exchanges) == 2 * (18 * 3 - 1)
    again, _ = read_run(out)
    whole, _ = read_run(judged["tmp"] / "panel")
    for name in (*RATES, "judge_errors", "n_items"):
        assert again[name] == whole[name], name
    assert again["judge_panel"]["judges"][2]["unanswered_stopped"] == 0
    no_secret_in(tmp_path, first.stderr, first.stdout, resumed.stderr, resumed.stdout)


def test_a_judge_that_declines_is_stopped_and_the_others_verdicts_are_kept(
    servers: list[JudgeServer], small_data_dir: Path, tmp_path: Path
) -> None:
    """A judge stopped by its decline watch is a judge that stopped: the pass goes on with the
    others; the last line says to replace it (asking it again buys the same refusals)."""
    with JudgeServer(declines=False, fault_for=seeded_declines({"effectiveness": 1.0})) as refusing:
        panel = _panel_file(tmp_path / "panel.yaml", [servers[0], servers[2], refusing])
        env = judge_env(small_data_dir, servers[0].base_url, "off", SIUO_JUDGE_PANEL=str(panel))
        env["PANEL_OTHER_KEY"] = OTHER_KEY
        proc = siuo_eval_in_process("judge", _input(tmp_path), "--output", tmp_path / "out", env=env)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert (
        f"stopped during the run: judge-c @ {refusing.base_url} (the judge judge-c at {refusing.base_url} declined"
        in last
    )
    assert "replace that judge in the panel file" in last and last.endswith(f"--output {tmp_path / 'out'}")
    results, _ = read_run(tmp_path / "out")
    judges = results["judge_panel"]["judges"]
    assert judges[2]["unanswered_stopped"] > 0 and judges[0]["judge_errors"] == judges[1]["judge_errors"] == 0


def _outcome(kind: str, verdict: bool | str | None, error: str | None = None) -> JudgeOutcome:
    return JudgeOutcome(kind, verdict, "reply", error, "m", prompt_tokens=10, attempts=1)


def test_vote_counts_judge_errors_and_undecided_votes() -> None:
    from siuo_task.benchmark.scoring import siuo_judge_request

    safety = siuo_judge_request("safety", "prompt", Path("image.png"))
    effect = siuo_judge_request("effectiveness", "prompt", Path("image.png"))
    # Effectiveness is two-valued before the vote: two effective labels outvote one ineffective.
    two = vote(effect, [_outcome("effectiveness", v) for v in ("very effective", "partially effective", "ineffective")])
    assert two.verdict == "effective" and two.error is None and two.prompt_tokens == 30 and two.attempts == 3
    # A judge error leaves that judge out: one safe against one unsafe is undecided.
    split = vote(safety, [_outcome("safety", True), _outcome("safety", False), _outcome("safety", None, "declined")])
    assert split.verdict is None and "undecided" in (split.error or "") and "1 judge error" in split.error
    left = vote(safety, [_outcome("safety", False), _outcome("safety", False), _outcome("safety", None, "failed")])
    assert left.verdict is False and left.error is None
    assert len(left.to_dict()["judges"]) == 3 and "judges" not in _outcome("safety", True).to_dict()


def _harness_command(harness: str, model: ModelServer, out: Path) -> list[str]:
    if harness == "lmms-eval":
        return harness_command(harness, model.base_url, out, generation_only=False, tasks=("siuo_gen",))
    # --limit counts items (each with its 3 responses), not VLMEvalKit's rows.
    extra = ["--temperature", "1.0", "--limit", str(VLMEVAL_LIMIT)]
    return harness_command(
        harness, model.base_url, out, generation_only=False, tasks=("siuo_gen",), api_nproc=8, extra=extra
    )


# lm-eval's run writes its summary through the same task hooks as lmms-eval's
# (siuo_task.harness.task_hooks); VLMEvalKit's through the judge pipeline.
@pytest.mark.slow
@pytest.mark.parametrize("harness", ["lmms-eval", "VLMEvalKit"])
def test_harness_run_with_the_panel_gives_siuo_eval_judges_numbers(
    harness: str, servers: list[JudgeServer], small_data_dir: Path, tmp_path: Path
) -> None:
    """The harness's OpenAI-compatible model class against the loopback model server, judged in
    the run by the panel; then `siuo-eval judge` with the same panel on that run's samples."""
    panel = _panel_file(tmp_path / "panel.yaml", servers[:3])
    env = judge_env(small_data_dir, servers[0].base_url, "off", SIUO_JUDGE_PANEL=str(panel), PANEL_OTHER_KEY=OTHER_KEY)
    env.update(hubs_offline(tmp_path / "hf"), LMUData=str(tmp_path / "lmu"))
    out = tmp_path / "run"
    with ModelServer(per_settings=True) as model:
        command = _harness_command(harness, model, out)
        proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    if harness == "VLMEvalKit":  # its evaluate writes our results file beside its own
        (results_file,) = sorted(out.rglob(f"*{GEN_PAPER}_siuo_results.json"))
        metrics = summary = json.loads(results_file.read_text())
        (samples_file,) = sorted(out.rglob(f"*{GEN_PAPER}_siuo_samples.jsonl"))
        samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
        assert summary["n_items"] == len(samples) == VLMEVAL_LIMIT
        assert [len(sample["siuo"]["responses"]) for sample in samples] == [3] * VLMEVAL_LIMIT
    else:
        (results_file,) = sorted(out.rglob("*_results.json"))
        native = json.loads(results_file.read_text())
        metrics = {k.split(",")[0]: v for k, v in native["results"]["siuo_gen"].items() if k.endswith(",none")}
        summary = native["siuo"]["siuo_gen"]
    later = siuo_eval_in_process("judge", out, "--output", tmp_path / "later", env=env)
    assert later.returncode == 0, later.stderr[-3000:]
    (results_path,) = sorted((tmp_path / "later").rglob("results.json"))
    judged = json.loads(results_path.read_text())
    for name in (*RATES, "judge_errors"):
        assert judged[name] == round(metrics[name], 4), name
    assert judged["judge_panel"] == summary["judge_panel"]
    assert len(judged["judge_panel"]["judges"]) == 3 and len(judged["judge_panel"]["agreement"]) == 3
    no_secret_in(tmp_path, proc.stdout, proc.stderr, later.stdout, later.stderr)


@pytest.mark.slow
def test_a_harness_run_whose_judge_dies_keeps_the_others_and_resumes_with_it_alone(
    small_data_dir: Path, tmp_path: Path
) -> None:
    """lmms-eval judged in the run by a panel whose third judge's key is revoked mid-run (401
    after 20 calls): the run keeps every response and the others' verdicts, writes its results,
    exits 1 and ends with the command that finishes the scoring; that command, with the key
    valid again, asks the third judge alone (the others' verdicts come from the cache)."""
    with ExitStack() as stack:
        servers = [stack.enter_context(JudgeServer(declines=False, reply_for=plan)) for plan in PLANS]
        servers[2].set_faults(dies_after(20, "401"))
        panel = _panel_file(tmp_path / "panel.yaml", servers)
        env = judge_env(small_data_dir, servers[0].base_url, tmp_path / "cache.sqlite3", SIUO_JUDGE_PANEL=str(panel))
        env.update(hubs_offline(tmp_path / "hf"), PANEL_OTHER_KEY=OTHER_KEY)
        out = tmp_path / "run"
        with ModelServer(per_settings=True) as model:
            command = _harness_command("lmms-eval", model, out)
            proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600)
        assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
        (results_file,) = sorted(out.rglob("*_results.json"))
        judges = json.loads(results_file.read_text())["siuo"]["siuo_gen"]["judge_panel"]["judges"]
        assert judges[2]["unanswered_stopped"] > 0 and [j["judge_errors"] for j in judges[:2]] == [0, 0]
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("siuo-task: to resume the scoring") and f"judge-c @ {servers[2].base_url}" in proc.stderr
        assert "refused the API key" in proc.stderr or "HTTP 401" in proc.stderr
        asked = [[(e.kind, e.response) for e in server.log.exchanges] for server in servers]
        servers[2].set_faults(None)
        resumed = siuo_eval_in_process(*shlex.split(last.rsplit(": siuo-eval ", 1)[1]), env=env)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        # a and b were asked nothing more; c was asked each request it had not answered, once.
        assert [len(server.log.exchanges) for server in servers[:2]] == [len(a) for a in asked[:2]]
        answered_c = sorted((e.kind, e.response) for e in servers[2].log.exchanges)
        assert answered_c == sorted(asked[0]) and len(asked[2]) < len(asked[0])
    (later_file,) = sorted((tmp_path / "run-judged").rglob("results.json"))
    later = json.loads(later_file.read_text())["judge_panel"]["judges"]
    for before, after in zip(judges[:2], later[:2], strict=True):
        assert {name: before[name] for name in RATES} == {name: after[name] for name in RATES}
    assert later[2]["unanswered_stopped"] == 0 and later[2]["judge_errors"] == 0
    no_secret_in(tmp_path, proc.stdout, proc.stderr, resumed.stdout, resumed.stderr)
