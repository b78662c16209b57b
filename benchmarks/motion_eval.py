"""Scoring motion detectors against labelled clips: interval matching, precision/recall/F1, CPU per frame.

Matching: a detected interval and a ground-truth interval match when their temporal IoU
(intersection over union of the two time spans) is at least `MIN_IOU`; pairs are taken greedily,
best IoU first, and each interval is used once. Unmatched detections are false positives (false
motion), unmatched truth intervals are misses. Precision, recall and F1 are computed from the
summed counts (micro-average), so long clips and short ones weigh by how many events they hold.
A fragmented detection (one walk split in two) costs a false positive; a detection that lingers
long after the object stopped lowers its IoU and can miss the match.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from benchmarks.frigate_motion import FrigateMotionBaseline
from benchmarks.motion_before import MotionDetector as BeforeMotionDetector
from benchmarks.synth.motion_clips import GroundTruth
from edged.analysis.motion import MotionDetector, MotionResult
from edged.analysis.motion.intervals import Interval, IntervalBuilder
from edged.config.schema import MotionConfig
from edged.sources.frame import Frame
from edged.sources.video import read_file_frames

MIN_IOU = 0.3


def iou(a: Interval, b: Interval) -> float:
    """Temporal intersection over union of two intervals (0 when they do not overlap)."""
    inter = min(a[1], b[1]) - max(a[0], b[0])
    if inter <= 0:
        return 0.0
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def match_intervals(truth: Sequence[Interval], detected: Sequence[Interval],
                    min_iou: float = MIN_IOU) -> list[tuple[int, int]]:
    """Greedy one-to-one matching, best IoU first: (truth index, detection index) pairs."""
    pairs = sorted(((iou(t, d), i, j) for i, t in enumerate(truth) for j, d in enumerate(detected)),
                   reverse=True)
    used_t: set[int] = set()
    used_d: set[int] = set()
    out = []
    for value, i, j in pairs:
        if value < min_iou:
            break
        if i in used_t or j in used_d:
            continue
        used_t.add(i)
        used_d.add(j)
        out.append((i, j))
    return sorted(out)


@dataclass(frozen=True)
class Scores:
    """Counts (matched intervals, or frames flagged while moving) and the rates derived from them."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: Scores) -> Scores:
        return Scores(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        """Matched detections / detections (1 when nothing was detected)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        """Matched truth / truth (1 when there was nothing to find)."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def score_intervals(truth: Sequence[Interval], detected: Sequence[Interval], min_iou: float = MIN_IOU) -> Scores:
    matched = len(match_intervals(truth, detected, min_iou))
    return Scores(matched, len(detected) - matched, len(truth) - matched)


def score_frames(truth: Sequence[Interval], flags: Iterable[tuple[float, bool]], since: float = 0.0) -> Scores:
    """Frame-level scores of `(time, motion)` flags from `since` on: a frame at `t` should be motion
    exactly when some ground-truth interval `[a, b)` holds `t`."""
    tp = fp = fn = 0
    for t, motion in flags:
        if t < since:
            continue
        moving = any(a <= t < b for a, b in truth)
        tp += motion and moving
        fp += motion and not moving
        fn += moving and not motion
    return Scores(tp, fp, fn)


def frame_scores(clip: ClipRun, detector: str) -> Scores:
    """One detector's frame-level scores on a clip, after its lead-in."""
    return score_frames(clip.truth.motion, clip.runs[detector].flags, clip.truth.scored_from)


# --- running detectors on clips --------------------------------------------------------------------


class FrameDetector:
    """One detector under test: `step(frame)` says whether the frame has motion.

    `prepare` runs outside the timed section (it stands for work the real system gets for free);
    `step` is what the benchmark times.
    """

    name = ""

    def prepare(self, frame: Frame) -> np.ndarray:
        return frame.image

    def step(self, data: np.ndarray, frame: Frame) -> bool:
        raise NotImplementedError


class EdgedDetector(FrameDetector):
    """edged's detector with a config (default: the daemon's defaults), fed the BGR frame as the daemon does.

    With `luma=True` it gets the same luma plane as the Frigate baseline instead (a like-for-like cost).
    """

    def __init__(self, config: MotionConfig | None = None, name: str = "edged", luma: bool = False) -> None:
        self.name = name
        self.luma = luma
        self.detector = MotionDetector(config or MotionConfig())
        self.last: MotionResult | None = None

    def prepare(self, frame: Frame) -> np.ndarray:
        return cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY) if self.luma else frame.image

    def step(self, data: np.ndarray, frame: Frame) -> bool:
        self.last = self.detector.update(data, frame.pts)
        return self.last.motion


BEFORE = "edged-before"


class BeforeDetector(FrameDetector):
    """edged's detector before the slow channel (`benchmarks.motion_before`), fed the BGR frame as the
    daemon feeds the current one: what the slow channel changed, measured on the same frames."""

    name = BEFORE

    def __init__(self) -> None:
        self.detector = BeforeMotionDetector(MotionConfig())

    def step(self, data: np.ndarray, frame: Frame) -> bool:
        return self.detector.update(data, frame.pts).motion


class FrigateDetector(FrameDetector):
    """The Frigate baseline, fed the luma plane (Frigate receives it from ffmpeg at no cost)."""

    def __init__(self, name: str = "frigate") -> None:
        self.name = name
        self.detector: FrigateMotionBaseline | None = None

    def prepare(self, frame: Frame) -> np.ndarray:
        return cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY)

    def step(self, data: np.ndarray, frame: Frame) -> bool:
        if self.detector is None:
            self.detector = FrigateMotionBaseline(data.shape[:2])
        return self.detector.is_motion(data)


@dataclass
class DetectorRun:
    """One detector on one clip."""

    flags: list[tuple[float, bool]] = field(default_factory=list)
    cpu_ns: list[int] = field(default_factory=list)
    intervals: list[Interval] = field(default_factory=list)


@dataclass
class ClipRun:
    """Every detector on one clip, fed the same frames."""

    name: str
    truth: GroundTruth
    frames: int
    runs: dict[str, DetectorRun]

    def detections(self, detector: str) -> list[Interval]:
        """The detector's intervals inside the scored part of the clip (after its lead-in)."""
        return scored_intervals(self.runs[detector].intervals, self.truth.scored_from)

    def scores(self, detector: str, min_iou: float = MIN_IOU) -> Scores:
        return score_intervals(self.truth.motion, self.detections(detector), min_iou)

    @property
    def scored_seconds(self) -> float:
        return self.truth.duration - self.truth.scored_from


def scored_intervals(intervals: Iterable[Interval], since: float) -> list[Interval]:
    """Intervals from `since` on: earlier ones dropped, one spanning `since` cut there."""
    return [(max(a, since), b) for a, b in intervals if b > since]


Observer = Callable[[Frame, Sequence[FrameDetector]], None]


def run_clip(path: str, truth: GroundTruth, detectors: Iterable[FrameDetector], analysis_fps: float = 5.0,
             frames: Iterable[Frame] | None = None, observer: Observer | None = None) -> ClipRun:
    """Feed every analysed frame of `path` (or `frames`) to each detector, timing each `step` in thread CPU time.

    Every detector's input is prepared before any is timed, so all of them find the frame equally
    warm in the caches; the order of the timed steps alternates from frame to frame. `observer`
    is called after each frame (progress output, sample capture).
    """
    dets = list(detectors)
    runs = {d.name: DetectorRun() for d in dets}
    builders = {d.name: IntervalBuilder(1.0 / analysis_fps) for d in dets}
    n = 0
    for frame in frames if frames is not None else read_file_frames(path, analysis_fps):
        inputs = {d.name: d.prepare(frame) for d in dets}
        for det in dets if n % 2 == 0 else dets[::-1]:
            start = time.thread_time_ns()
            motion = det.step(inputs[det.name], frame)
            elapsed = time.thread_time_ns() - start
            run = runs[det.name]
            run.cpu_ns.append(elapsed)
            run.flags.append((frame.pts, motion))
            closed = builders[det.name].add(frame.pts, motion)
            if closed is not None:
                run.intervals.append(closed)
        n += 1
        if observer is not None:
            observer(frame, dets)
    for name, builder in builders.items():
        last = builder.finish()
        if last is not None:
            runs[name].intervals.append(last)
    return ClipRun(truth.scene, truth, n, runs)


def false_motion_seconds(truth: Sequence[Interval], detected: Sequence[Interval]) -> float:
    """Seconds of detected motion that no ground-truth interval overlaps."""
    total = 0.0
    for a, b in detected:
        overlap = sum(max(0.0, min(b, tb) - max(a, ta)) for ta, tb in truth)
        total += (b - a) - overlap
    return total
