"""One real judge call before any generation, in every harness, so a broken judge costs no GPU time.

``check_judge`` is what ``siuo-eval check`` sends: a safety-judge request for the first item,
with its image, straight to the endpoint (no cache). Each harness's task calls
``check_judge_before_generation`` when the task is built; a judge that is unreachable, refuses
the key (401/403), has no such route (404) or does not serve the model ends the run there, with
the endpoint and the cause named. Under torchrun / accelerate only the first process of each
machine (LOCAL_RANK 0) probes; a failure there ends the whole launch.
"""

from __future__ import annotations

import sys
import threading

from siuo_task.benchmark.data import SiuoData
from siuo_task.benchmark.scoring import judge_requests
from siuo_task.errors import SiuoError, raised_again
from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine
from siuo_task.judge.panel import PanelConfig
from siuo_task.judge.probe import ProbeResult, probe
from siuo_task.judge.transport import Transport
from siuo_task.settings import Settings

# The response the probe asks the judge to grade: a plain refusal, which every judge can grade.
PROBE_RESPONSE = "I will not help with that, since it could put someone at risk."


def check_judge(config: JudgeConfig, data: SiuoData, transport: Transport | None = None) -> ProbeResult:
    """One real safety-judge call for the first item, with its image (through ``transport``
    when given, e.g. Inspect's grader role; else over HTTP to ``config``'s endpoint).

    Raises:
        JudgeEndpointError: naming the endpoint and the cause (see siuo_task.judge.probe).
    """
    request = judge_requests(data.gen[0], PROBE_RESPONSE)[0]
    engine = JudgeEngine(config, transport=transport)
    try:
        return probe(engine, request)
    finally:
        engine.close()


def describe_probe(result: ProbeResult) -> list[str]:
    lines = [
        f"judge: HTTP {result.status} from {result.endpoint}, model {result.model!r}, "
        f"{result.latency_s * 1000:.0f} ms for one call with an image"
    ]
    return lines + [f"judge: note: {note}" for note in result.notes]


_LOCK = threading.Lock()
_CHECKED: set[JudgeConfig] = set()
# A judge that failed its check fails every later check at once, with the same error and no
# further call (Inspect checks the grader role's judge in each sample's setup).
_FAILED: dict[JudgeConfig, Exception] = {}


def check_judge_before_generation(
    config: JudgeConfig | PanelConfig,
    settings: Settings,
    data_dir: str | None = None,
    transport: Transport | None = None,
) -> None:
    """The probe, once per judge configuration per process (however many tasks or concurrent
    samples ask), on the first process of a machine; every judge of a panel is probed.

    Args:
        config: the judge or panel.
        settings: the entry point's settings (which process this is, where the data are).
        data_dir: the data folder a task was given, if any (else the settings' one).
        transport: what sends the probe (None: HTTP to the judge's endpoint).

    Raises:
        JudgeEndpointError: the judge cannot grade; the run must end before generating.
    """
    if not settings.first_on_machine:
        return
    if isinstance(config, PanelConfig):
        for judge in config.judges:
            # Each over HTTP (a role's judges probe their own way).
            check_judge_before_generation(judge, settings, data_dir)
        return
    with _LOCK:  # concurrent callers wait for the one probe instead of sending their own
        if config in _CHECKED:
            return
        if config in _FAILED:
            raise raised_again(_FAILED[config]) from None  # every concurrent sample asks
        print(
            f"siuo-task: checking the judge {config.model} at {config.endpoint} before generating ...", file=sys.stderr
        )
        try:
            result = check_judge(config, settings.data(data_dir), transport)
        except SiuoError as exc:
            _FAILED[config] = exc
            raise
        for line in describe_probe(result):
            print(f"siuo-task: {line}", file=sys.stderr, flush=True)
        _CHECKED.add(config)
