"""The pure decision core: smoothing, the cutoff rule, refractory periods, replayed sweeps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.kws_evaluation import (
    Hit,
    Occurrence,
    Series,
    best_under,
    fire_times,
    fire_times_reference,
    match,
    quality,
)
from edged.analysis.kws.scoring import KeywordSettings, Refractory, ScoreTrack, crossed


@pytest.mark.parametrize(
    ("scores", "window", "means"),
    [
        ([0.9, 0.9, 0.9], 3, [0.0, 0.0, 0.9]),  # nothing until the window is full
        ([1.0, 0.0, 1.0, 1.0], 2, [0.0, 0.5, 0.5, 1.0]),
        ([0.3, 0.7], 1, [0.3, 0.7]),
    ],
)
def test_score_track_is_a_sliding_mean(scores: list[float], window: int, means: list[float]) -> None:
    """The smoothed score is the mean of the last `window` raw scores, 0 before the window fills."""
    track = ScoreTrack(window, step=0.03)
    assert [track.push(s) for s in scores] == pytest.approx(means)


def test_score_track_trace_and_clear() -> None:
    """The trace keeps the recent smoothed scores (1.5 s of them); clear() starts over."""
    track = ScoreTrack(1, step=0.5)
    for s in (0.1, 0.2, 0.3, 0.4):
        track.push(s)
    assert track.trace() == pytest.approx((0.2, 0.3, 0.4))
    track.clear()
    assert track.trace() == ()
    assert track.push(0.5) == 0.5


@pytest.mark.parametrize(
    ("score", "cutoff", "fires"), [(0.97, 0.97, False), (0.9701, 0.97, True), (0.5, 0.9, False)]
)
def test_cutoff_is_strict(score: float, cutoff: float, fires: bool) -> None:
    """A detection needs a smoothed score strictly above the cutoff (microWakeWord's rule)."""
    assert crossed(score, cutoff) is fires


def test_refractory_per_keyword() -> None:
    """After a hit a keyword stays quiet for the period; other keywords are not affected."""
    gate = Refractory(2.0)
    assert gate.admit("alexa", 10.0)
    assert not gate.admit("alexa", 11.9)
    assert gate.admit("hey_jarvis", 11.9)
    assert gate.admit("alexa", 12.0)
    assert gate.suppressed == 1
    gate.reset()
    assert gate.admit("alexa", 12.5)


@pytest.mark.parametrize(("cutoff", "window"), [(0.0, 5), (1.0, 5), (0.5, 0)])
def test_settings_reject_out_of_range(cutoff: float, window: int) -> None:
    """Cutoffs live strictly between 0 and 1; windows hold at least one score."""
    with pytest.raises(ValueError, match=r"cutoff|window"):
        KeywordSettings(cutoff, window)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.001, 0.2), st.floats(0.0, 1.0)), max_size=300),
    st.sampled_from([0.1, 0.5, 0.9, 0.99]),
    st.sampled_from([0.0, 0.3, 2.0]),
)
def test_fast_replay_matches_the_engine_rule(
    steps: list[tuple[float, float]], cutoff: float, refractory: float
) -> None:
    """The vectorised sweep replays scores exactly as the engine decides them, one by one."""
    times, t = [], 0.0
    for dt, _ in steps:
        t += dt
        times.append(t)
    series = Series(times, [s for _, s in steps])
    assert fire_times(series, cutoff, refractory) == fire_times_reference(series, cutoff, refractory)


def test_matching_and_quality() -> None:
    """A detection inside [start, end + 1.5 s] finds the keyword; anything else is a false accept."""
    truth = [Occurrence("a.flac", "alexa", 1.0, 1.5), Occurrence("a.flac", "alexa", 10.0, 10.6)]
    found, false = match(
        [Hit("a.flac", "alexa", 1.8), Hit("a.flac", "alexa", 5.0), Hit("a.flac", "alexa", 12.5)], truth
    )
    assert found == {truth[0]: 1.8}
    assert [h.t for h in false] == [5.0, 12.5]
    scores = {"a.flac": Series([1.8, 5.0], [0.99, 0.2]), "talk.flac": Series([3.0, 4.0], [0.95, 0.1])}
    q = quality("alexa", 0.9, 2.0, scores, truth=truth, negatives={"talk.flac": 1800.0})
    assert (q.found, q.positives, q.false_accepts) == (1, 2, 1)
    assert q.recall == 0.5
    assert q.fa_per_hour == 2.0
    assert q.latencies == pytest.approx((0.3,))
    lower = quality("alexa", 0.99, 2.0, scores, truth=truth, negatives={"talk.flac": 1800.0})
    assert best_under([q, lower], 1.0) == lower
