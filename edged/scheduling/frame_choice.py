"""Which frame a caption describes: among the frames since the trigger, a sharp one with the most motion."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from edged.analysis.history import AnalysedFrame

BLUR_FRACTION = 0.5  # frames below this share of the candidates' median sharpness count as blurred


def choose_frame(candidates: Sequence[AnalysedFrame], prefer_motion: bool) -> AnalysedFrame | None:
    """The best frame to caption, or None when there are no candidates.

    Blurred frames (motion blur, a half-decoded grey frame) are left out unless nothing else is left.
    For motion triggers the frame with the largest moving area wins (ties: the sharper); for the
    others (someone asked, a keyword) the most recent sharp frame, because "now" is what was asked about.
    """
    if not candidates:
        return None
    sharp = _not_blurred(candidates)
    if prefer_motion and any(f.motion_area > 0 for f in sharp):
        return max(sharp, key=lambda f: (round(f.motion_area, 3), f.sharpness))
    return max(sharp, key=lambda f: f.ts)


def _not_blurred(frames: Sequence[AnalysedFrame]) -> list[AnalysedFrame]:
    median = statistics.median(f.sharpness for f in frames)
    kept = [f for f in frames if f.sharpness >= BLUR_FRACTION * median]
    return kept or list(frames)
