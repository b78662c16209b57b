"""Interval building (what `edged motion` prints) and interval matching (how the benchmark scores)."""

from __future__ import annotations

import pytest

from benchmarks.motion_eval import (
    Scores,
    false_motion_seconds,
    iou,
    match_intervals,
    score_intervals,
    scored_intervals,
)
from edged.analysis.motion.intervals import IntervalBuilder, motion_intervals

P = 0.2  # frame period at 5 fps


def frames(pattern: str) -> list[tuple[float, bool]]:
    """'..##.#' -> frames at 0, 0.2, ... with motion where '#'."""
    return [(round(i * P, 3), c == "#") for i, c in enumerate(pattern)]


@pytest.mark.parametrize(("pattern", "gap", "expected"), [
    ("", 1.0, []),
    ("......", 1.0, []),
    ("#", 1.0, [(0.0, 0.2)]),
    ("..###..", 1.0, [(0.4, 1.0)]),
    ("##...##", 1.0, [(0.0, 1.4)]),  # 0.6 s gap < 1 s: one interval
    ("##.....##", 1.0, [(0.0, 0.4), (1.4, 1.8)]),  # a 1.0 s gap splits
    ("##.....##", 1.2, [(0.0, 1.8)]),
    ("#.#.#", 0.1, [(0.0, 0.2), (0.4, 0.6), (0.8, 1.0)]),
    ("....##", 1.0, [(0.8, 1.2)]),  # still open at the end of the stream
])
def test_motion_intervals(pattern: str, gap: float, expected: list[tuple[float, float]]) -> None:
    """Motion frames become [first, last + period) intervals, merged across gaps shorter than `gap`."""
    got = motion_intervals(frames(pattern), P, gap)
    assert [(round(a, 3), round(b, 3)) for a, b in got] == expected


def test_builder_reports_an_interval_once_it_is_closed() -> None:
    """Streaming: an interval comes out on the first frame that is a full gap past its end, not earlier."""
    builder = IntervalBuilder(P, merge_gap=1.0)
    out = [builder.add(t, m) for t, m in frames("##" + "." * 6)]
    closed_at = [i for i, iv in enumerate(out) if iv is not None]
    assert closed_at == [7]  # the interval ends at 0.4 s; frame 7 (1.4 s) is the first a whole gap later
    assert out[7] == (0.0, pytest.approx(0.4))
    assert builder.finish() is None


@pytest.mark.parametrize(("a", "b", "expected"), [
    ((0, 10), (0, 10), 1.0),
    ((0, 10), (5, 15), 5 / 15),
    ((0, 10), (10, 20), 0.0),
    ((0, 10), (2, 4), 0.2),
    ((3, 4), (0, 10), 0.1),
])
def test_iou(a: tuple[float, float], b: tuple[float, float], expected: float) -> None:
    """Temporal IoU is intersection over union, symmetric, 0 for touching intervals."""
    assert iou(a, b) == pytest.approx(expected)
    assert iou(b, a) == pytest.approx(expected)


@pytest.mark.parametrize(("truth", "detected", "expected"), [
    ([], [], Scores(0, 0, 0)),
    ([(10, 20)], [], Scores(0, 0, 1)),
    ([], [(10, 20)], Scores(0, 1, 0)),
    ([(10, 20)], [(10.4, 20.6)], Scores(1, 0, 0)),
    ([(10, 20)], [(10, 13), (14, 20)], Scores(1, 1, 0)),  # fragmented: one match, one false positive
    ([(10, 20)], [(0, 60)], Scores(0, 1, 1)),  # one endless detection does not match a short event
    ([(10, 20), (30, 40)], [(9, 41)], Scores(1, 0, 1)),  # one detection spanning two events matches one
    ([(10, 20), (30, 40)], [(31, 39), (11, 19)], Scores(2, 0, 0)),
    ([(10, 12)], [(11.5, 14)], Scores(0, 1, 1)),  # IoU 0.125 < 0.3
])
def test_score_intervals(truth: list[tuple[float, float]], detected: list[tuple[float, float]],
                         expected: Scores) -> None:
    """One-to-one matching at IoU >= 0.3: matched pairs are TP, the rest FP or FN."""
    assert score_intervals(truth, detected) == expected


def test_matching_prefers_the_best_overlap() -> None:
    """When two detections could match one truth interval, the higher-IoU one takes it."""
    assert match_intervals([(10, 20)], [(8, 14), (10, 19)]) == [(0, 1)]


@pytest.mark.parametrize(("scores", "precision", "recall", "f1"), [
    (Scores(0, 0, 0), 1.0, 1.0, 1.0),
    (Scores(3, 1, 0), 0.75, 1.0, 6 / 7),
    (Scores(1, 0, 3), 1.0, 0.25, 0.4),
    (Scores(0, 2, 2), 0.0, 0.0, 0.0),
])
def test_rates(scores: Scores, precision: float, recall: float, f1: float) -> None:
    """Precision, recall and F1 follow from the counts; empty cases count as perfect, not as zero."""
    assert (scores.precision, scores.recall, scores.f1) == pytest.approx((precision, recall, f1))


def test_scores_add_up() -> None:
    """Clip scores sum count by count (micro-average)."""
    assert Scores(1, 2, 3) + Scores(4, 5, 6) == Scores(5, 7, 9)


@pytest.mark.parametrize(("detected", "since", "expected"), [
    ([(0, 5), (8, 12), (20, 25)], 10.0, [(10.0, 12), (20, 25)]),
    ([(0, 10)], 10.0, []),
    ([], 3.0, []),
])
def test_scored_intervals_skip_the_lead_in(detected: list[tuple[float, float]], since: float,
                                           expected: list[tuple[float, float]]) -> None:
    """Detections before the scored part are dropped, one straddling its start is cut."""
    assert scored_intervals(detected, since) == expected


@pytest.mark.parametrize(("truth", "detected", "seconds"), [
    ([], [(0, 5)], 5.0),
    ([(0, 10)], [(2, 12)], 2.0),
    ([(0, 10), (20, 30)], [(5, 25)], 10.0),
    ([(0, 10)], [(1, 2)], 0.0),
])
def test_false_motion_seconds(truth: list[tuple[float, float]], detected: list[tuple[float, float]],
                              seconds: float) -> None:
    """Detected time outside every truth interval."""
    assert false_motion_seconds(truth, detected) == pytest.approx(seconds)
