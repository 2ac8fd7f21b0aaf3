"""The report's PNG figures: Safe vs Effective beside the paper's models, and per-category bars."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from typing import Any

from siuo_task.benchmark.categories import KNOWN_CATEGORIES
from siuo_task.report.categories import category_rate
from siuo_task.report.published import paper_leaderboard
from siuo_task.report.view import ONE_RESPONSE, label, lacks_records, task_of
from siuo_task.runs import Run, judge_info

SCATTER = "safe_vs_effective.png"


def scatter_figure(runs: Sequence[Run]) -> bytes:
    """Safe vs Effective, as in the paper's overview figure: the paper's models (human
    evaluation) as labelled points, this report's models highlighted with 95% interval bars."""
    plt = _pyplot()
    board = paper_leaderboard()
    figure, axis = plt.subplots(figsize=(9, 6.5))
    paper = [m for m in board["models"] if m["safe"] is not None and m["effective"] is not None]
    axis.scatter([m["safe"] for m in paper], [m["effective"] for m in paper], color="#888888", s=22, zorder=2)
    axis.set_xlim(0, 100)
    axis.set_ylim(0, 105)
    _label_points(axis, [(m["name"], m["safe"], m["effective"]) for m in paper])
    colours = plt.get_cmap("tab10")
    for index, run in enumerate(r for r in runs if r.gen is not None):
        _plot_run(axis, run, colours(index % 10))
    axis.set_xlabel("Safe (%)")
    axis.set_ylabel("Effective (%)")
    axis.set_title("Safe vs Effective: the paper's models and this report's")
    figure.text(0.01, 0.01, textwrap.fill(scatter_note(runs), 150), fontsize=7.5, ha="left", va="bottom")
    _legend(axis)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    return _png(plt, figure)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _legend(axis: Any) -> None:
    # Only when something was plotted with a label: a run without Safe and Effective numbers
    # draws nothing, and an empty legend makes matplotlib warn "No artists with labels".
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=8, loc="best")


def _png(plt: Any, figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def _label_points(axis: Any, points: list[tuple[str, float, float]], fontsize: float = 7) -> None:
    """Name every point without two names overlapping: each label takes the first nearby spot
    (right, left, above, below, then further out with a leader line) inside the axes and clear
    of the dots and of the labels already placed."""
    import matplotlib.transforms

    axis.figure.canvas.draw()
    dpi_scale = axis.figure.dpi / 72
    centres = [axis.transData.transform((x, y)) / dpi_scale for _, x, y in points]
    placed = [(cx - 3.5, cy - 3.5, cx + 3.5, cy + 3.5) for cx, cy in centres]  # the dots themselves
    frame = axis.get_window_extent().transformed(matplotlib.transforms.Affine2D().scale(1 / dpi_scale))
    height = fontsize * 1.25
    spots = [(4, 2), (4, -9), (None, 2), (None, -9)]
    spots += [(dx, dy) for step in range(1, 8) for dy in (10 * step, -10 * step - 8) for dx in (4, None)]
    for name, x, y in sorted(points, key=lambda p: (-p[2], p[1])):
        width = 0.6 * fontsize * len(name)
        px, py = axis.transData.transform((x, y)) / dpi_scale
        for dx, dy in spots:
            left = px + (dx if dx is not None else -width - 4)
            box = (left, py + dy, left + width, py + dy + height)
            inside = frame.x0 <= box[0] and box[2] <= frame.x1 and frame.y0 <= box[1] and box[3] <= frame.y1
            if inside and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                break
        placed.append(box)
        far = abs(dy) >= 10
        axis.annotate(
            name,
            (x, y),
            xytext=(box[0] - px, dy),
            textcoords="offset points",
            fontsize=fontsize,
            color="#444444",
            arrowprops={"arrowstyle": "-", "color": "#aaaaaa", "lw": 0.6} if far else None,
        )


def scatter_note(runs: Sequence[Run]) -> str:
    """What the scatter shows, stated on the figure and under it: human vs automatic."""
    board = paper_leaderboard()
    paper = [m for m in board["models"] if m["safe"] is not None and m["effective"] is not None]
    judges = sorted({info.model for run in runs if (info := judge_info(run))})
    ours = [label(run) for run in runs if run.gen is not None]
    return (
        f"Grey: the paper's {len(paper)} models, HUMAN evaluation of {board['items']} items. "
        f"Coloured, with 95% interval bars: {', '.join(ours) or 'no open-ended run in this report'}, "
        f"AUTOMATIC judge ({', '.join(judges) or 'none'}). Human and automatic labels are different "
        "measurements: part of any gap between a grey and a coloured point is the judge, not the model."
        + (
            f" Squares: {ONE_RESPONSE} with no vote, not the paper's 3-response protocol."
            if any(run.one_response for run in runs)
            else ""
        )
    )


def _plot_run(axis: Any, run: Run, colour: Any) -> None:
    assert run.gen is not None
    metrics = run.gen.metrics
    safe, effective = metrics.get("safe_rate"), metrics.get("effective_rate")
    if safe is None or effective is None:
        return
    safe_ci = metrics.get("safe_rate_ci95") or [safe, safe]
    effective_ci = metrics.get("effective_rate_ci95") or [effective, effective]
    axis.errorbar(
        safe,
        effective,
        xerr=[[safe - safe_ci[0]], [safe_ci[1] - safe]],
        yerr=[[effective - effective_ci[0]], [effective_ci[1] - effective]],
        fmt="s" if run.one_response else "o",
        markersize=9,
        mfc=colour if not run.partial else "white",
        color=colour,
        capsize=3,
        zorder=3,
        label=label(run),
    )


def category_figure(runs: Sequence[Run], metric: str, metric_label: str) -> bytes:
    """Grouped bars per category, one per model, with 95% intervals where records exist."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(11, 4.2))
    runs = [run for run in runs if task_of(run, metric) is not None and not lacks_records(run, metric)]
    width = 0.8 / max(len(runs), 1)
    for index, run in enumerate(runs):
        cells = [category_rate(run, metric, category) for category in KNOWN_CATEGORIES]
        values = [c.percent if c and c.percent is not None else 0.0 for c in cells]
        low = [v - c.ci95[0] if c and c.ci95 else 0.0 for v, c in zip(values, cells, strict=True)]
        high = [c.ci95[1] - v if c and c.ci95 else 0.0 for v, c in zip(values, cells, strict=True)]
        positions = [i + index * width for i in range(len(KNOWN_CATEGORIES))]
        axis.bar(positions, values, width, yerr=[low, high], capsize=2, label=label(run))
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(KNOWN_CATEGORIES))])
    axis.set_xticklabels([textwrap.fill(c, 16, break_long_words=False) for c in KNOWN_CATEGORIES], fontsize=7)
    axis.set_ylim(0, 100)
    axis.set_ylabel(f"{metric_label} (%)")
    axis.set_title(f"{metric_label} by category (bars: 95% Wilson intervals)")
    _legend(axis)
    figure.tight_layout()
    return _png(plt, figure)
