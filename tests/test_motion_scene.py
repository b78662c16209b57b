"""Frame-choice primitives: sharpness and flatness, choosing a frame, and the scene-change signature."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edged.analysis.scene import (
    SCENE_CHANGED,
    FrameQuality,
    best_frame,
    frame_quality,
    scene_signature,
    signature_distance,
)

H, W = 360, 640


def scene(seed: int = 0) -> np.ndarray:
    """A textured BGR frame: coarse shapes plus fine detail."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(rng.random((9, 16)).astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.random((H, W)).astype(np.float32), (0, 0), 1.0)
    grey = np.clip(40 + 150 * coarse + 70 * (fine - 0.5), 0, 255)
    return np.repeat(grey[..., None], 3, 2).astype(np.uint8)


def motion_blur(image: np.ndarray, length: int) -> np.ndarray:
    kernel = np.zeros((1, length), np.float32)
    kernel[:] = 1.0 / length
    return cv2.filter2D(image, -1, kernel)


def half_decoded(image: np.ndarray) -> np.ndarray:
    out = image.copy()
    out[H // 2:] = 128  # the decoder gave up half way: flat grey below
    return out


@pytest.mark.parametrize(("degrade", "sharper_than_original"), [
    (lambda im: cv2.GaussianBlur(im, (0, 0), 1.5), False),
    (lambda im: cv2.GaussianBlur(im, (0, 0), 4.0), False),
    (lambda im: motion_blur(im, 9), False),
    (lambda im: motion_blur(im, 25), False),
    (lambda im: im, None),
])
def test_blur_lowers_sharpness(degrade: object, sharper_than_original: bool | None) -> None:
    """Defocus and motion blur score lower than the original frame; an unchanged frame scores the same."""
    original = frame_quality(scene()).sharpness
    degraded = frame_quality(degrade(scene())).sharpness  # type: ignore[operator]
    if sharper_than_original is None:
        assert degraded == pytest.approx(original)
    else:
        assert degraded < 0.6 * original


def test_more_blur_scores_lower() -> None:
    """Sharpness falls monotonically with the length of the motion blur."""
    scores = [frame_quality(motion_blur(scene(), n)).sharpness for n in (1, 3, 7, 15, 31)]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(("make", "flat_low", "flat_high"), [
    (scene, 0.0, 0.05),
    (lambda: half_decoded(scene()), 0.4, 0.6),
    (lambda: np.full((H, W, 3), 128, np.uint8), 0.99, 1.0),
    (lambda: cv2.cvtColor(scene(), cv2.COLOR_BGR2GRAY), 0.0, 0.05),  # luma input works too
])
def test_flatness(make: object, flat_low: float, flat_high: float) -> None:
    """Flat share: ~0 for a textured frame, ~half for a half-decoded one, ~1 for a grey one."""
    quality = frame_quality(make())  # type: ignore[operator]
    assert flat_low <= quality.flat <= flat_high


def q(sharpness: float, flat: float = 0.0) -> FrameQuality:
    return FrameQuality(sharpness, flat)


@pytest.mark.parametrize(("candidates", "expected"), [
    ([], None),
    ([(q(100), 0.1)], 0),
    ([(q(100), 0.1), (q(100), 0.3), (q(100), 0.2)], 1),  # most motion wins
    ([(q(100), 0.1), (q(30), 0.3)], 0),  # ... unless it is much blurrier than the sharpest
    ([(q(100), 0.1), (q(60), 0.3)], 1),  # a little blurrier is fine
    ([(q(100), 0.2), (q(120), 0.2)], 1),  # equal motion: the sharper
    ([(q(100, 0.02), 0.1), (q(100, 0.5), 0.4)], 0),  # half-decoded frames are set aside
    ([(q(0, 1.0), 0.0), (q(0, 1.0), 0.0)], None),  # all blank: nothing to caption
    ([(q(0, 1.0), 0.2), (q(50, 0.3), 0.0)], 1),  # a blank frame never wins
])
def test_best_frame(candidates: list[tuple[FrameQuality, float]], expected: int | None) -> None:
    """The sharpest-enough, fully decoded frame with the most motion is chosen."""
    assert best_frame(candidates) == expected


def test_real_blur_and_corruption_lose_to_a_good_frame() -> None:
    """On measured frames: a motion-blurred and a half-decoded frame lose even with more motion area."""
    good, blurred, broken = scene(), motion_blur(scene(), 25), half_decoded(scene())
    candidates = [(frame_quality(blurred), 0.3), (frame_quality(good), 0.1), (frame_quality(broken), 0.4)]
    assert best_frame(candidates) == 1


def with_noise(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape[:2])[..., None]
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def with_object(image: np.ndarray, share: float) -> np.ndarray:
    out = image.copy()
    side_w, side_h = int(W * np.sqrt(share)), int(H * np.sqrt(share))
    out[100:100 + side_h, 200:200 + side_w] = (20, 20, 220)
    return out


@pytest.mark.parametrize(("change", "changed"), [
    (lambda im: im, False),
    (lambda im: with_noise(im, 6.0, 1), False),  # sensor noise
    (lambda im: np.clip(im * 1.3 + 10, 0, 255).astype(np.uint8), False),  # brighter and more contrast
    (lambda im: (im * 0.6).astype(np.uint8), False),  # dusk
    (lambda im: with_noise((im * 0.3).astype(np.uint8), 5.0, 2), False),  # night: dark and noisy
    (lambda im: with_object(im, 0.02), True),  # a person-sized object appeared
    (lambda im: with_object(im, 0.15), True),  # a car
    (lambda im: scene(seed=5), True),  # another place altogether
])
def test_signature_distance(change: object, changed: bool) -> None:
    """Noise and global light changes keep the distance under SCENE_CHANGED; a new object pushes it over."""
    base = scene()
    distance = signature_distance(scene_signature(base), scene_signature(change(base)))  # type: ignore[operator]
    assert (distance > SCENE_CHANGED) is changed, distance


def test_signature_ignores_masked_areas() -> None:
    """A change inside a mask polygon does not count as a scene change."""
    base = scene()
    moved = with_object(base, 0.05)
    mask = ((0.25, 0.2), (0.75, 0.2), (0.75, 0.75), (0.25, 0.75))  # covers the object
    assert signature_distance(scene_signature(base), scene_signature(moved)) > SCENE_CHANGED
    assert signature_distance(scene_signature(base, (mask,)), scene_signature(moved, (mask,))) == 0.0


def test_signatures_of_different_shapes_are_far_apart() -> None:
    """Comparing signatures of differently shaped frames (a reconfigured camera) means 'changed'."""
    a = scene_signature(scene())
    b = scene_signature(np.zeros((480, 480, 3), np.uint8))
    assert signature_distance(a, b) == 1.0
