"""The pure core of keyword decisions: sliding-window smoothing, the cutoff, refractory periods, traces.

Backends turn audio into one raw probability per model step; everything that decides whether that
is a detection lives here, as small state machines driven only by their inputs (no clocks, no
threads), so each rule is tested with tables.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

TRACE_SECONDS = 1.5  # score history carried by each detection


@dataclass(frozen=True)
class KeywordSettings:
    """What decides a keyword's detections; replaced whole when changed at run time."""

    cutoff: float  # a smoothed score above this is a detection
    window: int  # raw scores averaged (microWakeWord's sliding_window_size)
    enabled: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.cutoff < 1.0:
            raise ValueError(f"cutoff must be between 0 and 1, exclusive (got {self.cutoff})")
        if self.window < 1:
            raise ValueError(f"sliding window must be >= 1 score (got {self.window})")

    def with_cutoff(self, cutoff: float) -> KeywordSettings:
        return replace(self, cutoff=float(cutoff))

    def with_enabled(self, enabled: bool) -> KeywordSettings:
        return replace(self, enabled=bool(enabled))


@dataclass(frozen=True)
class Detection:
    """A keyword heard: its smoothed score crossed the cutoff at `stream_time` (seconds of audio)."""

    keyword: str
    score: float
    stream_time: float
    cutoff: float
    backend: str
    trace: tuple[float, ...] = ()  # smoothed scores, one every `trace_step` s, the last one is `score`
    trace_step: float = 0.0


def crossed(score: float, cutoff: float) -> bool:
    """The detection rule: strictly above the cutoff (as microWakeWord and ESPHome compare)."""
    return score > cutoff


class ScoreTrack:
    """One keyword's recent raw scores: their sliding mean, and a trace of recent means.

    `push` returns the mean of the last `window` raw scores, or 0.0 until `window` scores have
    arrived since the last `clear` (a half-empty window never fires).
    """

    def __init__(self, window: int, step: float, trace_seconds: float = TRACE_SECONDS) -> None:
        self.window = window
        self.step = step
        self._raw: deque[float] = deque(maxlen=window)
        self._trace: deque[float] = deque(maxlen=max(1, round(trace_seconds / step)))

    def push(self, score: float) -> float:
        raw = self._raw
        raw.append(score)
        mean = sum(raw) / self.window if len(raw) == self.window else 0.0
        self._trace.append(mean)
        return mean

    def trace(self) -> tuple[float, ...]:
        return tuple(self._trace)

    def clear(self) -> None:
        self._raw.clear()
        self._trace.clear()


class Refractory:
    """After a keyword fires, the same keyword stays quiet for `period` seconds of audio.

    Keyed by keyword name, so a keyword spotted by two backends fires once.
    """

    def __init__(self, period: float) -> None:
        if period < 0:
            raise ValueError(f"refractory period must be >= 0 s (got {period})")
        self.period = period
        self._last: dict[str, float] = {}
        self.suppressed = 0

    def admit(self, keyword: str, stream_time: float) -> bool:
        """Whether a detection of `keyword` at `stream_time` may fire (and, if so, remember it)."""
        last = self._last.get(keyword)
        if last is not None and stream_time - last < self.period:
            self.suppressed += 1
            return False
        self._last[keyword] = stream_time
        return True

    def reset(self) -> None:
        self._last.clear()


class Agreement:
    """A second stage for one keyword: it fires only when two model families both crossed their own
    cutoffs at most `within` seconds of audio apart.

    Fed every detection of the keyword from either family (in stream order); returns the detection to
    fire, or None. What fires is the primary family's latest detection, at the time the second of
    the two crossings arrived (so a late confirmation fires late rather than never), with `backend`
    naming both families. Near misses that fool one family rarely fool the other in the same half
    second, which is what this buys.
    """

    def __init__(self, confirm_backend: str, within: float) -> None:
        if within < 0:
            raise ValueError(f"agreement window must be >= 0 s (got {within})")
        self.confirm_backend = confirm_backend
        self.within = within
        self._primary: Detection | None = None
        self._confirmed_at: float | None = None

    def push(self, detection: Detection) -> Detection | None:
        t = detection.stream_time
        if detection.backend == self.confirm_backend:
            self._confirmed_at = t
            primary = self._primary
            if primary is None or t - primary.stream_time > self.within:
                return None
        else:
            self._primary = primary = detection
            if self._confirmed_at is None or t - self._confirmed_at > self.within:
                return None
        return replace(primary, stream_time=t, backend=f"{primary.backend}+{self.confirm_backend}")

    def reset(self) -> None:
        self._primary = None
        self._confirmed_at = None
