"""Installs siuo-task exactly as README.md's "Install" block says, one fresh venv per line, and
runs a short generation-only run of that line's harness in it (tests/helpers/smoke_run.py).

The test suite runs in the environment scripts/install.sh makes; users type README's lines.
This checks the lines themselves, so a package-index release that breaks a harness (as
filelock 4 broke lmms-eval) turns CI red instead of reaching a user. Run by .ci/run after the
test command; needs the package index.

    python3 scripts/check_install.py            # every line of the block
    python3 scripts/check_install.py --keep DIR  # keep the venvs under DIR (default: removed)

Exits 0 when every line installed and its harness ran; else 1, naming the line.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Which harness each install line brings: the base install is lmms-eval's, each extra its own.
HARNESS_OF_EXTRA = {"": "lmms-eval", "vlmeval": "VLMEvalKit", "inspect": "Inspect", "lm-eval": "lm-eval"}
_EXTRA = re.compile(r'-e\s+"?\.(?:\[([\w-]+)\])?"?(?:\s|$)')


def install_lines(readme: Path) -> list[str]:
    """The ``pip install`` lines of README's Install block, without their comments."""
    text = readme.read_text(encoding="utf-8")
    section = text.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line.startswith("pip install")]


def harness_of(line: str) -> str:
    match = _EXTRA.search(line)
    if match is None or (match.group(1) or "") not in HARNESS_OF_EXTRA:
        raise SystemExit(f"check_install: README line {line!r} installs no extra this script knows {HARNESS_OF_EXTRA}")
    return HARNESS_OF_EXTRA[match.group(1) or ""]


def check_line(line: str, venv: Path) -> str | None:
    """Install ``line`` as typed in a fresh ``venv`` and run its harness; the failure, or None."""
    harness = harness_of(line)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    activate = f". {venv}/bin/activate && "
    started = time.monotonic()
    installed = subprocess.run(["bash", "-c", activate + line], cwd=ROOT, capture_output=True, text=True)
    print(f"check_install: `{line}`: exit {installed.returncode} after {time.monotonic() - started:.0f} s", flush=True)
    if installed.returncode != 0:
        return f"`{line}` failed:\n{installed.stderr[-4000:]}"
    smoke_run = activate + f"python -m tests.helpers.smoke_run {harness}"
    smoke = subprocess.run(["bash", "-c", smoke_run], cwd=ROOT, capture_output=True, text=True)
    print(smoke.stdout.strip(), flush=True)
    if smoke.returncode != 0:
        return f"after `{line}`, {harness} does not run:\n{smoke.stderr[-8000:]}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="make the venvs under this folder and keep them")
    args = parser.parse_args()
    lines = install_lines(ROOT / "README.md")
    if not lines:
        print("check_install: README.md's Install block has no `pip install` line", file=sys.stderr)
        return 1
    failures = []
    parent = args.keep or Path(tempfile.mkdtemp(prefix="siuo-check-install-"))
    try:
        for index, line in enumerate(lines):
            venv = parent / f"venv-{index}"
            failure = check_line(line, venv)
            if failure:
                failures.append(failure)
                print(f"check_install: FAILED: {failure}", file=sys.stderr, flush=True)
            if args.keep is None:
                shutil.rmtree(venv, ignore_errors=True)
    finally:
        if args.keep is None:
            shutil.rmtree(parent, ignore_errors=True)
    print(f"check_install: {len(lines) - len(failures)} of {len(lines)} README install lines give a harness that runs")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
