"""Scoring keyword detections against ground truth: recall, false accepts per hour, latency, sweeps.

Pure functions over plain data. A spoken keyword counts as found when a detection of the same
keyword fires between its start and `MAX_LATENCY` seconds after its end; every other detection is
a false accept. `fire_times` replays recorded smoothed scores through the engine's own rule (the
cutoff test and the refractory period), so a threshold sweep needs one pass over the audio.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from edged.analysis.kws.scoring import Refractory, crossed

MAX_LATENCY = 1.5  # seconds after the keyword ends within which a detection still counts


@dataclass(frozen=True)
class Occurrence:
    """A keyword spoken in a file: where, and how it was made."""

    file: str
    keyword: str
    start: float
    end: float
    condition: str = ""
    voice: str = ""


@dataclass(frozen=True)
class Hit:
    """A detection (file, keyword, seconds of audio consumed when it fired)."""

    file: str
    keyword: str
    t: float


@dataclass
class Series:
    """One keyword's smoothed scores over one file (`add()` them, then read `arrays()`)."""

    times: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    _arrays: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def add(self, t: float, score: float) -> None:
        self.times.append(t)
        self.scores.append(score)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None or len(self._arrays[0]) != len(self.times):
            self._arrays = (np.asarray(self.times, dtype=np.float64),
                            np.asarray(self.scores, dtype=np.float64))
        return self._arrays


@dataclass(frozen=True)
class Quality:
    """How well one keyword was spotted on one evaluation set at one cutoff."""

    keyword: str
    cutoff: float
    positives: int
    found: int
    false_accepts: int  # on the negative (ordinary speech) files
    negative_hours: float
    latencies: tuple[float, ...] = ()  # seconds from the keyword's end to the detection

    @property
    def recall(self) -> float:
        return self.found / self.positives if self.positives else 0.0

    @property
    def fa_per_hour(self) -> float:
        return self.false_accepts / self.negative_hours if self.negative_hours else 0.0

    def latency(self, q: float) -> float:
        return float(np.quantile(self.latencies, q)) if self.latencies else float("nan")


def fire_times(series: Series, cutoff: float, refractory: float) -> list[float]:
    """When the engine would fire on these scores at `cutoff` (same rule, same refractory).

    Equivalent to feeding every score through `crossed` and `Refractory.admit` in order, but it
    jumps from one admitted detection to the first candidate after its refractory period.
    """
    times, scores = series.arrays()
    candidates = np.nonzero(scores > cutoff)[0]
    out: list[float] = []
    i = 0
    while i < len(candidates):
        t = float(times[candidates[i]])
        out.append(t)
        # the next score that the refractory period no longer covers (same test as Refractory.admit)
        i += max(1, int(np.searchsorted(times[candidates[i:]] - t, refractory, side="left")))
    return out


def fire_times_union(series: Sequence[Series], cutoffs: Sequence[float], refractory: float) -> list[float]:
    """The engine's detections when one keyword runs on several backends: every backend's crossings
    of its own cutoff, merged in time, through one shared refractory period."""
    candidates: list[float] = []
    for s, cutoff in zip(series, cutoffs, strict=True):
        times, scores = s.arrays()
        candidates.extend(times[scores > cutoff].tolist())
    gate = Refractory(refractory)
    return [t for t in sorted(candidates) if gate.admit("k", t)]


def fire_times_reference(series: Series, cutoff: float, refractory: float) -> list[float]:
    """`fire_times` written as the engine applies it, score by score (for tests)."""
    gate = Refractory(refractory)
    return [t for t, s in zip(series.times, series.scores, strict=True)
            if crossed(s, cutoff) and gate.admit("k", t)]


def match(hits: Iterable[Hit], truth: Sequence[Occurrence],
          max_latency: float = MAX_LATENCY) -> tuple[dict[Occurrence, float], list[Hit]]:
    """Pair detections with occurrences: {occurrence: first detection time}, and the unpaired detections."""
    by_key: dict[tuple[str, str], list[Occurrence]] = {}
    for occ in truth:
        by_key.setdefault((occ.file, occ.keyword), []).append(occ)
    found: dict[Occurrence, float] = {}
    false: list[Hit] = []
    for hit in hits:
        owner = next((o for o in by_key.get((hit.file, hit.keyword), ())
                      if o.start <= hit.t <= o.end + max_latency), None)
        if owner is None:
            false.append(hit)
        elif owner not in found:
            found[owner] = hit.t
    return found, false


def quality(keyword: str, cutoff: float, refractory: float, scores: Mapping[str, Series], *,
            truth: Sequence[Occurrence], negatives: Mapping[str, float]) -> Quality:
    """`keyword`'s quality at `cutoff`.

    `scores` maps file -> this keyword's score series; `truth` holds the occurrences of `keyword`;
    `negatives` maps each ordinary-speech file to its duration (seconds) for the false-accept rate.
    """
    hits = [Hit(f, keyword, t) for f, s in scores.items() for t in fire_times(s, cutoff, refractory)]
    positives = [o for o in truth if o.keyword == keyword]
    pos_files = {o.file for o in positives}
    found, _ = match([h for h in hits if h.file in pos_files], positives)
    false = [h for h in hits if h.file in negatives]
    return Quality(keyword, cutoff, len(positives), len(found), len(false), sum(negatives.values()) / 3600,
                   tuple(t - o.end for o, t in found.items()))


def sweep(keyword: str, cutoffs: Iterable[float], refractory: float, scores: Mapping[str, Series], *,
          truth: Sequence[Occurrence], negatives: Mapping[str, float]) -> list[Quality]:
    return [quality(keyword, c, refractory, scores, truth=truth, negatives=negatives) for c in cutoffs]


def best_under(points: Sequence[Quality], max_fa_per_hour: float) -> Quality | None:
    """The highest-recall point whose false-accept rate is within budget (the highest, safest cutoff
    among equal recalls)."""
    ok = [p for p in points if p.fa_per_hour <= max_fa_per_hour]
    if not ok:
        return None
    return max(ok, key=lambda p: (p.recall, p.cutoff))


def default_cutoffs() -> list[float]:
    """A sweep grid dense near 1, where wake-word cutoffs live."""
    coarse = [round(x, 2) for x in np.arange(0.05, 0.9, 0.05)]
    fine = [round(x, 3) for x in np.arange(0.9, 0.995, 0.01)]
    return sorted({*coarse, *fine, 0.995, 0.998})
