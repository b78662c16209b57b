"""Labelled synthetic clips, and the detector's quality floors on them (through the daemon's own capture path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.motion_eval import score_intervals
from benchmarks.synth.motion_clips import actor_box, load_ground_truth, motion_truth, small_movers, write_clip
from edged.analysis.motion import MotionDetector
from edged.analysis.motion.intervals import Interval, motion_intervals
from edged.config.schema import MotionConfig
from edged.sources.video import read_file_frames

FIXTURE = Path(__file__).parent / "fixtures" / "motion" / "mixed.mp4"
FPS = 5.0


def detect(path: Path, config: MotionConfig | None = None) -> list[Interval]:
    detector = MotionDetector(config or MotionConfig())
    flags = [(f.pts, detector.update(f.image, f.pts).motion) for f in read_file_frames(str(path), FPS)]
    return motion_intervals(flags, 1.0 / FPS)


def test_write_clip_writes_video_and_ground_truth(tmp_path: Path) -> None:
    """A clip and its JSON ground truth land side by side; the video holds the frames the truth describes."""
    path = tmp_path / "walk.mp4"
    truth = write_clip(path, "walkers", width=160, height=90, duration=9.0, lead_in=2.0)
    assert path.stat().st_size > 10_000
    assert load_ground_truth(path) == truth
    assert truth.duration == pytest.approx(11.0)
    assert truth.scored_from == 2.0
    assert (truth.width, truth.height) == (160, 90)
    frames = list(read_file_frames(str(path), FPS))
    assert len(frames) == pytest.approx(11.0 * FPS, abs=1)
    assert frames[0].image.shape == (90, 160, 3)
    # The first walker enters at 5 s of the scene (7 s of the clip) and is still walking at the end.
    assert len(truth.motion) == 1
    start, end = truth.motion[0]
    assert 7.0 < start < 8.5
    assert end == pytest.approx(11.0)


@pytest.mark.parametrize("scene", ["lights", "ramp", "lightning", "shadows", "noise"])
def test_light_camera_and_noise_are_never_ground_truth_motion(scene: str) -> None:
    """Scenes without actors have no motion in their ground truth, whatever their light does."""
    assert motion_truth(scene) == ()


@pytest.mark.parametrize(("scene", "expected"), [
    # A car drives in from well outside (in view from ~7 s, parked at 12 s) and leaves from 45 s (out of
    # view by ~50.5 s); a person walks by (25-33 s) while it is parked.
    ("parking", [(7.0, 12.0), (25.0, 33.0), (45.0, 50.5)]),
    # A person walks in (5-11 s), stands still for 15 s (not motion), walks away (26-32 s).
    ("loiter", [(5.0, 11.0), (26.0, 32.0)]),
])
def test_ground_truth_follows_the_actors(scene: str, expected: list[tuple[float, float]]) -> None:
    """Truth intervals cover the time actors move while visible, never while they stand still."""
    truth = motion_truth(scene)
    assert len(truth) == len(expected)
    for (start, end), (move_start, move_end) in zip(truth, expected, strict=True):
        assert move_start <= start <= move_start + 1.5  # entering from the edge: visible a little later
        assert move_end - 1.5 <= end <= move_end + 0.2


def test_lead_in_shifts_the_ground_truth() -> None:
    """A lead-in of quiet scene moves every interval by its length."""
    plain, led = motion_truth("walkers", duration=20.0), motion_truth("walkers", duration=20.0, lead_in=7.0)
    assert [(round(a + 7.0, 3), round(b + 7.0, 3)) for a, b in plain] == list(led)


def test_f1_floor_on_the_committed_clip() -> None:
    """On the committed mixed clip every motion event is found, with at most one false interval."""
    truth = load_ground_truth(FIXTURE)
    assert len(truth.motion) == 3
    scores = score_intervals(truth.motion, detect(FIXTURE))
    assert scores.recall == 1.0
    assert scores.fp <= 1
    assert scores.f1 >= 0.85


def test_no_motion_around_the_light_events_of_the_committed_clip() -> None:
    """The lamp switching on and off and the lightning flash in the committed clip cause no motion."""
    truth = load_ground_truth(FIXTURE)
    found = detect(FIXTURE)
    for t, kind in truth.events:
        near = [iv for iv in found if iv[0] < t + 2.0 and iv[1] > t - 0.5]
        assert near == [], (kind, t, near)


@pytest.mark.parametrize(("scene", "duration"), [
    ("lights", 25.0),  # lamp on at 8 s, off at 20 s, with auto-exposure catching up
    ("ir_switch", 24.0),  # colour -> IR night mode at 15 s (before the person arrives)
    ("lightning", 25.0),  # single and double flashes
    ("ramp", 30.0),  # daylight fading
    ("shadows", 20.0),  # cloud shadows drifting over everything
])
def test_lighting_clips_produce_no_motion(tmp_path: Path, scene: str, duration: float) -> None:
    """Light changes of every kind produce no motion interval at all (after the 1 s start-up calibration)."""
    path = tmp_path / f"{scene}.mp4"
    truth = write_clip(path, scene, width=320, height=180, duration=duration, crf=28)
    assert truth.motion == ()
    assert detect(path) == []


def test_small_mover_sets_span_their_ranges_and_do_not_overlap() -> None:
    """The tuning and held-out sets are fixed (same scenes every run), disjoint, and each spreads its
    figures over 0.5-2 % of the frame with every scene's figure box really that share of the frame."""
    tune, heldout = small_movers("tune"), small_movers("heldout")
    assert {n: s.description for n, s in tune.items()} == {n: s.description for n, s in small_movers("tune").items()}
    assert len(tune) == 8 and len(heldout) == 10
    assert not set(tune) & set(heldout)
    assert {s.description for s in tune.values()}.isdisjoint(s.description for s in heldout.values())
    for scenes in (tune, heldout):
        sizes = []
        for spec in scenes.values():
            (actor,) = spec.actors
            box = actor_box(actor, 10.0, 640, 360)
            assert box is not None
            sizes.append(box[2] * box[3] / (640 * 360))
        assert min(sizes) < 0.008 and max(sizes) > 0.015
        assert all(0.0045 <= s <= 0.021 for s in sizes), sizes


@pytest.mark.parametrize("scene", ["small-t0", "small-h9"])
def test_small_mover_ground_truth_is_its_two_walks(scene: str) -> None:
    """A small mover walks from 4 s to 16 s, stands still until 21 s (not motion), walks until 33 s."""
    truth = motion_truth(scene)
    assert len(truth) == 2
    (a0, b0), (a1, b1) = truth
    assert 4.0 <= a0 <= 4.3 and 15.9 <= b0 <= 16.2
    assert 21.0 <= a1 <= 21.3 and 32.9 <= b1 <= 33.2
