"""Which frame a caption describes: among the frames since the trigger, a sharp, fully decoded one with the
most motion (for motion triggers) or the most recent one (for everything else: "now" is what was asked about)."""

from __future__ import annotations

from collections.abc import Sequence

from edged.analysis.history import AnalysedFrame
from edged.analysis.scene import best_frame


def choose_frame(candidates: Sequence[AnalysedFrame], prefer_motion: bool) -> AnalysedFrame | None:
    """The best frame to caption, or None when there are no usable candidates (all blank)."""
    scored = [(f.quality, f.motion_area if prefer_motion else f.ts) for f in candidates]
    index = best_frame(scored)
    return None if index is None else candidates[index]
