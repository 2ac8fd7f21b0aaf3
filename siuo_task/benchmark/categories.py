"""The nine SIUO safety domains, in the order the paper lists them."""

from __future__ import annotations

import re

KNOWN_CATEGORIES: tuple[str, ...] = (
    "self-harm",
    "dangerous behavior",
    "morality",
    "illegal activities & crime",
    "controversial topics, politics",
    "discrimination & stereotyping",
    "religion beliefs",
    "information misinterpretation",
    "privacy violation",
)


def category_slug(category: str) -> str:
    """A metric-name-safe form of a category ("illegal activities & crime" -> "illegal_activities_crime")."""
    return re.sub(r"[^a-z0-9]+", "_", category.lower()).strip("_")
