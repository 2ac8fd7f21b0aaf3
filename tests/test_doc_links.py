"""Every relative link in the project's Markdown points at a file that exists (and, with an
anchor, at a heading that file has, slugged as GitHub does)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parent.parent

# [text](target) or ![alt](target "title"); the target ends at whitespace or ")".
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"`+[^`]*`+")
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def documents() -> list[Path]:
    docs = [REPO / "README.md", REPO / "CHANGELOG.md"]
    docs += sorted((REPO / "docs").glob("**/*.md"))
    docs += sorted((REPO / "siuo_task" / "adapters").glob("*/README.md"))
    return [doc for doc in docs if doc.is_file()]


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of each link outside code (a link in a code span is code)."""
    return [
        (number, match.group(1))
        for number, line in _prose_lines(text)
        for match in LINK.finditer(CODE_SPAN.sub("", line))
    ]


def anchors(text: str) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, -1, -2 ... for repeats."""
    seen: Counter[str] = Counter()
    ids = set()
    for _, line in _prose_lines(text):
        match = HEADING.match(line)
        if not match:
            continue
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match.group(1))  # a link's text only
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        ids.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return ids


def dead_links(doc: Path) -> list[str]:
    text = doc.read_text(encoding="utf-8")
    problems = []
    for number, target in links(text):
        if URL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / unquote(path_part)).resolve() if path_part else doc
        where = f"{doc.relative_to(REPO) if doc.is_relative_to(REPO) else doc}:{number}: ({target})"
        if not path.exists():
            problems.append(f"{where} no such file")
        elif anchor and path.suffix == ".md" and path.is_file():
            if anchor.lower() not in anchors(path.read_text(encoding="utf-8")):
                problems.append(f"{where} no heading #{anchor} in {path.name}")
    return problems


@pytest.mark.parametrize("doc", documents(), ids=lambda doc: str(doc.relative_to(REPO)))
def test_no_dead_relative_link(doc: Path) -> None:
    assert not dead_links(doc)


def test_the_checker_finds_dead_links_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## The judge: `SIUO_JUDGE_MODEL`\n\n## Repeat\n\n## Repeat\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Title\n\n"
        "[ok](other.md) [ok anchor](other.md#the-judge-siuo_judge_model) [repeat](other.md#repeat-1)\n"
        "[self](#title) [web](https://example.org/missing) ![img](other.md)\n"
        "[gone](missing.md) [bad anchor](other.md#nowhere) [bad self](#untitled)\n"
        "`[in code](missing-in-code.md)`\n"
        "```\n[in a fence](missing-in-fence.md)\n```\n"
    )
    problems = dead_links(doc)
    assert [problem.split(": ", 1)[1] for problem in problems] == [
        "(missing.md) no such file",
        "(other.md#nowhere) no heading #nowhere in other.md",
        "(#untitled) no heading #untitled in doc.md",
    ]
