"""Per-frame motion flags -> motion intervals in stream time (what `edged motion` prints).

A motion frame at stream time `t` covers `[t, t + frame_period)`. Consecutive motion separated by
less than `merge_gap` seconds of no motion is one interval, so one person walking past is one
interval even if a frame or two in the middle showed nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

MERGE_GAP = 1.0  # s
_EPSILON = 1e-6  # s: frame times are sums of float periods; a gap of exactly merge_gap splits
Interval = tuple[float, float]


class IntervalBuilder:
    """Streams intervals: `add` returns an interval as soon as it is known to be closed."""

    def __init__(self, frame_period: float, merge_gap: float = MERGE_GAP) -> None:
        self.frame_period = frame_period
        self.merge_gap = merge_gap
        self._open: list[float] | None = None

    def add(self, t: float, motion: bool) -> Interval | None:
        """Feed one analysed frame (in stream order); returns the interval this frame closed, if any."""
        current = self._open
        if current is not None and t - current[1] >= self.merge_gap - _EPSILON:
            self._open = None
            closed: Interval | None = (current[0], current[1])
        else:
            closed = None
        if motion:
            if self._open is None:
                self._open = [t, t + self.frame_period]
            else:
                self._open[1] = t + self.frame_period
        return closed

    def finish(self) -> Interval | None:
        """The interval still open at the end of the stream, if any."""
        current, self._open = self._open, None
        return None if current is None else (current[0], current[1])


def motion_intervals(frames: Iterable[tuple[float, bool]], frame_period: float,
                     merge_gap: float = MERGE_GAP) -> list[Interval]:
    """All intervals of a sequence of `(stream time, motion)` frames."""
    builder = IntervalBuilder(frame_period, merge_gap)
    out = [iv for t, motion in frames if (iv := builder.add(t, motion)) is not None]
    last = builder.finish()
    return [*out, last] if last is not None else out
