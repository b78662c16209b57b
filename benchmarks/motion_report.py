"""The PNG report of `python -m benchmarks motion`: per-clip timelines and a motion-mask example (matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from benchmarks.motion_eval import ClipRun
from benchmarks.report import pyplot

if TYPE_CHECKING:
    from benchmarks.motion import Sample

_COLOURS = {"truth": "#222222", "edged": "#2a9d4b", "frigate": "#e07b00"}


def write_report_png(path: Path, results: Sequence[ClipRun], detectors: Sequence[str], sample: Sample) -> None:
    """Timelines of ground truth vs. each detector per clip (lead-in shaded, light events marked),
    and below them the sample frame with edged's boxes, edged's foreground and the baseline's mask."""
    plt = pyplot()

    rows = len(results)
    fig = plt.figure(figsize=(13, 0.55 * rows + 4.5))
    grid = fig.add_gridspec(2, 3, height_ratios=[max(1.0, rows * 0.55), 3.2], hspace=0.28)
    _timelines(fig.add_subplot(grid[0, :]), results, detectors)
    if sample.image is not None:
        _mask_example(fig, grid, sample)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _timelines(ax: Any, results: Sequence[ClipRun], detectors: Sequence[str]) -> None:
    lanes = ["truth", *detectors]
    height = 1.0 / (len(lanes) + 1)
    labels, ticks = [], []
    ax.axvspan(0, min(c.truth.scored_from for c in results), color="#f0f0f0", zorder=0)
    for row, clip in enumerate(results):
        base = len(results) - 1 - row
        for lane, name in enumerate(lanes):
            y = base + 1 - (lane + 1) * height
            spans = clip.truth.motion if name == "truth" else clip.runs[name].intervals
            ax.broken_barh([(a, b - a) for a, b in spans], (y - height * 0.4, height * 0.8),
                           facecolors=_COLOURS.get(name, "#5555aa"))
        for t, _kind in clip.truth.events:
            ax.plot([t, t], [base + 0.05, base + 0.95], color="#4060d0", lw=0.8, ls="--")
        ax.axhline(base, color="#cccccc", lw=0.5)
        labels.append(clip.name)
        ticks.append(base + 0.5)
    ax.set_yticks(ticks, labels)
    ax.set_ylim(0, len(results))
    ax.set_xlim(0, max(c.truth.duration for c in results))
    ax.set_xlabel("clip time (s); shaded: unscored lead-in; dashed: light events")
    handles = [matplotlib_patch(_COLOURS.get(n, "#5555aa"), n) for n in lanes]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=9, frameon=False)
    ax.set_title("Motion intervals per clip: ground truth (top lane of each clip) vs. detectors")


def matplotlib_patch(colour: str, label: str) -> Any:
    from matplotlib.patches import Patch

    return Patch(color=colour, label=label)


def _mask_example(fig: Any, grid: Any, sample: Sample) -> None:
    assert sample.image is not None
    rgb = cv2.cvtColor(sample.image, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    ax = fig.add_subplot(grid[1, 0])
    ax.imshow(rgb)
    for x0, y0, x1, y1 in sample.edged_boxes:
        ax.add_patch(_rect(x0 * w, y0 * h, (x1 - x0) * w, (y1 - y0) * h))
    ax.set_title(f"{sample.clip} at {sample.t:.1f} s: edged motion boxes", fontsize=9)
    ax.axis("off")
    for col, (mask, title) in enumerate(((sample.edged_mask, "edged foreground (analysis size)"),
                                         (sample.frigate_mask, "frigate threshold mask (100 px)")), 1):
        ax = fig.add_subplot(grid[1, col])
        ax.imshow(mask if mask is not None else np.zeros((2, 2)), cmap="gray", interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")


def _rect(x: float, y: float, w: float, h: float) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, fill=False, edgecolor="#00ff40", lw=1.5)
