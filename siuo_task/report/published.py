"""Figures published by others, as the report shows them beside a user's runs: the paper's
leaderboard and SIUO results published since (both under configs/, each with its source)."""

from __future__ import annotations

import json
from typing import Any

from siuo_task.resources import config_text


def paper_leaderboard() -> dict[str, Any]:
    return json.loads(config_text("paper_leaderboard.json"))


def later_results() -> dict[str, Any]:
    """SIUO results published since the paper, each with its source (configs/later_results.json)."""
    return json.loads(config_text("later_results.json"))
