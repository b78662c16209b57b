"""Sanity checks of the Frigate baseline re-implementation against its published behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.frigate_motion import FrigateMotionBaseline

H, W = 180, 320


def background(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.kron(rng.integers(40, 200, (9, 16)), np.ones((20, 20)))
    return base.astype(np.float32)


def frame(bg: np.ndarray, rng: np.random.Generator, gain: float = 1.0,
          square: tuple[int, int] | None = None) -> np.ndarray:
    img = bg * gain + rng.normal(0, 1.5, bg.shape)
    if square is not None:
        x, y = square
        img[y:y + 40, x:x + 40] = 250
    return np.clip(img, 0, 255).astype(np.uint8)


def settled(detector: FrigateMotionBaseline, bg: np.ndarray, rng: np.random.Generator, seconds: float = 40) -> None:
    for _ in range(int(seconds * 5)):
        detector.detect(frame(bg, rng))


def test_calibrates_at_start_then_goes_quiet() -> None:
    """It starts calibrating (zero background) and ends up reporting nothing on a static scene."""
    bg, rng = background(), np.random.default_rng(1)
    det = FrigateMotionBaseline((H, W))
    det.detect(frame(bg, rng))
    assert det.calibrating
    settled(det, bg, rng)
    assert not det.calibrating
    assert det.detect(frame(bg, rng)) == []


def test_moving_square_gives_boxes_in_input_pixels() -> None:
    """A moving bright square gives motion with boxes in input-frame pixels around it."""
    bg, rng = background(), np.random.default_rng(2)
    det = FrigateMotionBaseline((H, W))
    settled(det, bg, rng)
    motion = [det.is_motion(frame(bg, rng, square=(x, 70))) for x in range(60, 200, 10)]
    assert all(motion[1:])
    boxes = det.detect(frame(bg, rng, square=(210, 70)))
    assert any(x0 <= 230 <= x1 and y0 <= 90 <= y1 for x0, y0, x1, y1 in boxes)


@pytest.mark.parametrize(("gain", "calibrating"), [(3.0, True), (0.1, True), (1.05, False)])
def test_whole_frame_change_recalibrates(gain: float, calibrating: bool) -> None:
    """A change over more than lightning_threshold of the frame switches calibration on; a small one does not."""
    bg, rng = background(), np.random.default_rng(3)
    det = FrigateMotionBaseline((H, W))
    settled(det, bg, rng)
    det.detect(frame(bg, rng, gain=gain))
    assert det.calibrating is calibrating


def test_half_frame_light_change_counts_as_motion() -> None:
    """Its known weak spot: a light change over half the frame (< 80 %) is reported as motion."""
    bg, rng = background(), np.random.default_rng(4)
    det = FrigateMotionBaseline((H, W))
    settled(det, bg, rng)
    lit = bg.copy()
    lit[:, : W // 2] *= 1.6
    assert det.is_motion(frame(lit, rng))


def test_masked_motion_is_ignored() -> None:
    """Motion inside a mask gives no boxes."""
    bg, rng = background(), np.random.default_rng(5)
    det = FrigateMotionBaseline((H, W), masks=(((0.0, 0.2), (1.0, 0.2), (1.0, 0.8), (0.0, 0.8)),))
    settled(det, bg, rng)
    assert not any(det.is_motion(frame(bg, rng, square=(x, 70))) for x in range(60, 200, 10))
