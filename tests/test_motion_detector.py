"""Unit tests of the motion detector core on synthetic frames (no video files)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

import cv2
import numpy as np
import pytest

from edged.analysis.motion import MotionDetector, MotionResult
from edged.config.schema import MotionConfig

H, W = 180, 320
FPS = 5.0

Frame = Callable[[int], np.ndarray]


def texture(seed: int = 0) -> np.ndarray:
    """A smooth random texture (BGR float 0..255), like a real background."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(rng.random((9, 16)).astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.random((H, W)).astype(np.float32), (0, 0), 1.5)
    grey = np.clip(60 + 120 * coarse + 60 * (fine - 0.5), 0, 255)
    return np.repeat(grey[..., None], 3, 2) * np.asarray((0.9, 1.0, 1.1), np.float32)


def render(background: np.ndarray, rng: np.random.Generator, gain: float = 1.0, noise: float = 2.0,
           square: tuple[int, int, int] | None = None) -> np.ndarray:
    """One frame: the background under `gain`, with noise and optionally a dark square (x, y, size)."""
    img = background * gain
    if square is not None:
        x, y, s = square
        img[y:y + s, x:x + s] = (30, 40, 200)
    img = img + rng.normal(0, noise, img.shape[:2])[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def run(frames: Frame, count: int, config: MotionConfig | None = None) -> list[MotionResult]:
    detector = MotionDetector(config or MotionConfig())
    return [detector.update(frames(i), i / FPS) for i in range(count)]


def motion_times(results: list[MotionResult]) -> list[float]:
    return [r.ts for r in results if r.motion]


def _walker(t: float) -> tuple[int, int, int] | None:
    """A square crossing the frame between 12 s and 18 s."""
    return (int((t - 12) / 6 * (W + 40)) - 40, 70, 30) if 12 <= t < 18 else None


def _shade(t: float, start: float, duration: float, depth: float, softness: float) -> np.ndarray:
    """A soft shadow edge sweeping from left to right, as a per-column gain."""
    edge = (t - start) / duration * (W + 300) - 150
    return (1.0 - depth / (1.0 + np.exp(-(edge - np.arange(W, dtype=np.float32)) / softness)))[None, :, None]


def _ramp(t: float, start: float, seconds: float, drop: float) -> float:
    return 1.0 - drop * min(1.0, max(0.0, (t - start) / seconds))


def _ir(bg: np.ndarray) -> np.ndarray:
    """Colour -> grey night mode with inverted, compressed contrast (foliage and walls swap brightness)."""
    return np.repeat(255 - 0.7 * bg.mean(axis=2, keepdims=True), 3, 2)


# kind -> (background, t, frame index) -> keyword arguments of `render`; every scene is quiet for 10 s first.
SCENES: dict[str, Callable[[np.ndarray, float, int], dict[str, object]]] = {
    "static": lambda bg, t, i: {"background": bg},
    "noisy": lambda bg, t, i: {"background": bg * 0.25, "noise": 8.0},
    "walker": lambda bg, t, i: {"background": bg, "square": _walker(t)},
    "walk_in_shadow": lambda bg, t, i: {"background": bg * _shade(t, 11, 6, 0.6, 40), "square": _walker(t)},
    "walk_at_dusk": lambda bg, t, i: {"background": bg, "gain": _ramp(t, 10, 10, 0.7), "square": _walker(t)},
    "walk_in_ae_hunt": lambda bg, t, i: {"background": bg, "square": _walker(t),
                                         "gain": 1.0 + 0.25 * np.sin(2 * np.pi * t / 3.0) if t > 10 else 1.0},
    "lights_on": lambda bg, t, i: {"background": bg, "gain": 1.0 if t < 12 else 1.6},
    "lights_off": lambda bg, t, i: {"background": bg, "gain": 1.0 if t < 12 else 0.4},
    "ramp": lambda bg, t, i: {"background": bg, "gain": _ramp(t, 12, 20, 0.6)},
    "flash": lambda bg, t, i: {"background": bg, "gain": 2.5 if i == 75 else 1.0},
    "ir": lambda bg, t, i: {"background": bg if t < 12 else _ir(bg)},
    "shadow": lambda bg, t, i: {"background": bg * _shade(t, 12, 8, 0.45, 50)},
    "parks": lambda bg, t, i: {"background": bg,  # arrives at 12 s, stops at 14 s, stays
                               "square": (20 + int(min(2.0, t - 12) * 60), 70, 40) if t >= 12 else None},
}


def scene(kind: str) -> Frame:
    """The frames of one scene of `SCENES`."""
    bg = texture()
    rng = np.random.default_rng(1)
    make = SCENES[kind]
    return lambda i: render(rng=rng, **make(bg, i / FPS, i))  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "seconds", "expect_motion", "window"), [
    ("static", 30, False, None),
    ("noisy", 30, False, None),
    ("lights_on", 30, False, None),
    ("lights_off", 30, False, None),
    ("ramp", 40, False, None),
    ("flash", 30, False, None),
    ("ir", 30, False, None),
    ("shadow", 25, False, None),
    ("walker", 25, True, (12.0, 18.4)),
    ("walk_in_shadow", 25, True, (12.0, 18.4)),
    ("walk_at_dusk", 25, True, (12.0, 18.4)),
    ("walk_in_ae_hunt", 25, True, (12.0, 18.4)),
    ("parks", 30, True, (12.0, 15.0)),
])
def test_motion_only_when_something_moves(kind: str, seconds: int, expect_motion: bool,
                                          window: tuple[float, float] | None) -> None:
    """Lighting changes, noise and a static scene give no motion; a moving object does, only while it moves."""
    results = run(scene(kind), int(seconds * FPS))
    times = [t for t in motion_times(results) if t >= 3.0]  # after the start-up calibration
    if not expect_motion:
        assert times == []
        return
    assert window is not None
    assert times, "the moving object was not detected"
    assert all(window[0] <= t <= window[1] for t in times), times
    assert len(times) >= 0.6 * (window[1] - window[0] - 2.0) * FPS  # detected through most of the move


def test_stopped_object_fades_into_the_background() -> None:
    """An object that stops stops being motion at once and leaves the foreground within a few seconds."""
    frames = scene("parks")
    detector = MotionDetector(MotionConfig())
    results = [detector.update(frames(i), i / FPS) for i in range(int(22 * FPS))]
    assert any(r.motion for r in results if 12 <= r.ts < 14.4)
    assert not any(r.motion for r in results if r.ts >= 15)
    fg = detector.foreground
    assert fg is None or cv2.countNonZero(fg) == 0


def test_light_change_reports_calibrating_then_settles() -> None:
    """A sudden light change makes the detector calibrate briefly (no motion), then detect normally again."""
    results = run(scene("lights_on"), int(20 * FPS))
    after = [r for r in results if r.ts >= 12.0]
    assert after[0].calibrating
    assert not any(r.motion for r in after)
    assert not after[-1].calibrating


def test_first_frames_calibrate() -> None:
    """Start-up is a calibration: no motion is claimed before the background exists."""
    results = run(scene("walker"), 5)
    assert results[0].calibrating
    assert not results[0].motion


def test_boxes_locate_the_moving_object() -> None:
    """Boxes are normalised and cover the moving square; area is its share of the frame."""
    bg = texture()
    rng = np.random.default_rng(2)
    detector = MotionDetector(MotionConfig())
    for i in range(50):
        detector.update(render(bg, rng), i / FPS)
    result = None
    for j, x in enumerate(range(100, 200, 8)):
        result = detector.update(render(bg, rng, square=(x, 60, 40)), (50 + j) / FPS)
    assert result is not None
    assert result.motion
    box = max(result.boxes, key=lambda b: b.area)
    cx, cy = (box.x0 + box.x1) / 2 * W, (box.y0 + box.y1) / 2 * H
    assert abs(cx - (x + 20)) < 25
    assert abs(cy - 80) < 25
    assert 0 <= box.x0 < box.x1 <= 1
    assert 0 <= box.y0 < box.y1 <= 1
    assert 0.5 * (40 * 40) / (W * H) < result.area < 3.0 * (40 * 40) / (W * H)


@pytest.mark.parametrize(("mask", "expect_motion"), [
    (((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)), False),  # everything masked
    (((0.0, 0.2), (1.0, 0.2), (1.0, 0.8), (0.0, 0.8)), False),  # the band the square moves in
    (((0.0, 0.0), (1.0, 0.0), (1.0, 0.15), (0.0, 0.15)), True),  # only the top strip
])
def test_masks_hide_motion(mask: tuple[tuple[float, float], ...], expect_motion: bool) -> None:
    """Motion inside a mask polygon is ignored; motion elsewhere is still found."""
    results = run(scene("walker"), int(20 * FPS), MotionConfig(masks=(mask,)))
    assert bool(motion_times(results)) is expect_motion


@pytest.mark.parametrize(("off_delay", "expect_off_after"), [(0.0, 0.0), (2.0, 2.0), (5.0, 5.0)])
def test_state_turns_off_after_off_delay(off_delay: float, expect_off_after: float) -> None:
    """`active` turns on with the first motion frame and off `off_delay` s after the last one, once each."""
    results = run(scene("walker"), int(30 * FPS), MotionConfig(off_delay=off_delay))
    changes = [r for r in results if r.changed]
    assert [r.active for r in changes] == [True, False]
    on, off = changes
    assert on.motion
    assert on.ts == motion_times(results)[0]
    last_motion = motion_times(results)[-1]
    assert off.ts - last_motion == pytest.approx(max(expect_off_after, 1 / FPS), abs=1 / FPS + 1e-9)


def test_lower_threshold_is_more_sensitive() -> None:
    """A faint object is missed at a high threshold and found at a low one (set at run time)."""
    bg = texture()

    def faint(i: int) -> np.ndarray:
        rng = np.random.default_rng(i)
        img = bg.copy()
        if i >= 60:
            x = 40 + (i - 60) * 6
            img[60:100, x:x + 40] += 20  # +20 luma: a low-contrast object
        return render(img, rng, noise=1.0)

    def detections(threshold: int) -> int:
        detector = MotionDetector(MotionConfig())
        detector.set_threshold(threshold)
        return sum(detector.update(faint(i), i / FPS).motion for i in range(90))

    assert detections(120) == 0
    assert detections(10) > 10


def test_disabled_reports_nothing_and_turns_state_off() -> None:
    """set_enabled(False) stops detection at once (state OFF); re-enabling recalibrates first."""
    frames = scene("walker")
    detector = MotionDetector(MotionConfig())
    results = [detector.update(frames(i), i / FPS) for i in range(75)]
    assert results[-1].active
    detector.set_enabled(False)
    off = detector.update(frames(75), 75 / FPS)
    assert (off.changed, off.active, off.motion) == (True, False, False)
    assert not any(detector.update(frames(i), i / FPS).motion for i in range(76, 85))
    detector.set_enabled(True)
    assert detector.update(frames(85), 85 / FPS).calibrating


@pytest.mark.parametrize(("setter", "value"), [
    ("set_threshold", 0), ("set_threshold", 256), ("set_threshold", 2.5), ("set_threshold", True),
    ("set_contour_area", 0), ("set_contour_area", -3), ("set_enabled", "yes"), ("set_enabled", 1),
])
def test_setters_reject_bad_values(setter: str, value: object) -> None:
    """Out-of-range or mistyped run-time settings raise ValueError and change nothing."""
    detector = MotionDetector(MotionConfig())
    before = (detector.threshold, detector.contour_area, detector.enabled)
    with pytest.raises(ValueError, match="must be"):
        getattr(detector, setter)(value)
    assert (detector.threshold, detector.contour_area, detector.enabled) == before


def test_setters_are_safe_from_another_thread() -> None:
    """Settings changed from other threads while frames are analysed all land, and analysis keeps going."""
    frames = scene("static")
    detector = MotionDetector(MotionConfig())
    stop = threading.Event()

    def tweak(offset: int) -> None:
        n = 0
        while not stop.is_set():
            detector.set_threshold(10 + (n + offset) % 20)
            detector.set_contour_area(5 + (n + offset) % 7)
            n += 1

    threads = [threading.Thread(target=tweak, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    try:
        results = [detector.update(frames(i), i / FPS) for i in range(60)]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(results) == 60
    detector.set_threshold(42)
    detector.set_contour_area(7)
    assert (detector.threshold, detector.contour_area) == (42, 7)


def test_frame_size_change_recalibrates() -> None:
    """A new frame size (a camera reconfigured) starts a fresh calibration instead of failing."""
    frames = scene("static")
    detector = MotionDetector(MotionConfig())
    for i in range(20):
        detector.update(frames(i), i / FPS)
    small = cv2.resize(frames(20), (160, 90))
    assert detector.update(small, 20 / FPS).calibrating


@pytest.mark.parametrize("image", [
    np.zeros((90, 160, 4), np.uint8), np.zeros((90, 160, 3), np.float32), np.zeros((90,), np.uint8),
])
def test_rejects_images_it_cannot_read(image: np.ndarray) -> None:
    """Anything but uint8 BGR or luma is refused with a message naming what came in."""
    with pytest.raises(ValueError, match="uint8 BGR or luma"):
        MotionDetector(MotionConfig()).update(image, 0.0)


def test_luma_input_gives_the_same_result_as_bgr() -> None:
    """Feeding the luma plane instead of BGR changes nothing (the daemon reads BGR, benchmarks both)."""
    frames = scene("walker")
    bgr, grey = MotionDetector(MotionConfig()), MotionDetector(MotionConfig())
    for i in range(100):
        image = frames(i)
        a = bgr.update(image, i / FPS)
        b = grey.update(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), i / FPS)
        assert (a.motion, a.calibrating, len(a.boxes)) == (b.motion, b.calibrating, len(b.boxes))


def test_reset_recalibrates_on_the_next_frame() -> None:
    """reset() (callable from any thread) makes the next frame start a fresh calibration."""
    frames = scene("static")
    detector = MotionDetector(MotionConfig())
    results = [detector.update(frames(i), i / FPS) for i in range(20)]
    assert not results[-1].calibrating
    other = threading.Thread(target=detector.reset)
    other.start()
    other.join()
    assert detector.update(frames(20), 20 / FPS).calibrating


def _mover(background: np.ndarray, rng: np.random.Generator, t: float, size: float, speed: float,
           contrast: float, noise: float) -> np.ndarray:
    """A frame with a small upright figure (box `size` of the frame, 1:2) walking right at `speed` px/s
    from 12 s to 24 s, standing still from 24 s to 29 s, walking on until 41 s; `contrast` luma darker
    than the scene, edges drawn with sub-pixel coverage so that slow steps are not whole pixels."""
    h = round(float(np.sqrt(2 * size * W * H)))
    w = h / 2
    x0 = 60 + speed * (min(t, 24) - 12 + max(0.0, min(t, 41) - 29))
    img = background.copy()
    if t >= 12:
        xs = np.arange(W, dtype=np.float32)
        cover = np.clip(np.minimum(xs + 1 - x0, x0 + w - xs), 0, 1)  # share of each column inside the figure
        img[100 - h:100] -= contrast * cover[None, :, None]
    return np.clip(img + rng.normal(0, noise, img.shape[:2])[..., None], 0, 255).astype(np.uint8)


class _Result(Protocol):
    @property
    def motion(self) -> bool: ...


class _Detector(Protocol):
    """What the small-mover tests need of a detector (the current one, or the one before the slow channel)."""

    def update(self, image: np.ndarray, ts: float) -> _Result: ...


def _mover_flags(detector: _Detector, **figure: float) -> dict[str, list[bool]]:
    bg = texture(3)
    rng = np.random.default_rng(4)
    flags: dict[str, list[bool]] = {"before": [], "walking": [], "standing": [], "after": []}
    for i in range(int(45 * FPS)):
        t = i / FPS
        motion = detector.update(_mover(bg, rng, t, **figure), t).motion
        if 3 <= t < 12:
            flags["before"].append(motion)
        elif 12.6 <= t < 24 or 29.6 <= t < 41:  # walking, after the first analysed frames of each walk
            flags["walking"].append(motion)
        elif 25.5 <= t < 29:  # standing still, 1.5 s after stopping
            flags["standing"].append(motion)
        elif t >= 42.5:
            flags["after"].append(motion)
    return flags


SMALL_SLOW = [  # size (share of the frame), speed (px/s at 320 wide), contrast (luma), sensor noise (luma)
    pytest.param(0.01, 6.0, 25.0, 4.0, id="1%-6px/s-contrast25-noise4"),
    pytest.param(0.005, 5.0, 30.0, 3.0, id="0.5%-5px/s-contrast30-noise3"),
    pytest.param(0.01, 8.0, 20.0, 5.0, id="1%-8px/s-contrast20-noise5"),
]


@pytest.mark.parametrize(("size", "speed", "contrast", "noise"), SMALL_SLOW)
def test_small_slow_mover_is_motion_while_it_moves(size: float, speed: float, contrast: float,
                                                   noise: float) -> None:
    """A small, faint figure creeping across a noisy scene (a fraction of a pixel per analysed frame) is
    motion through most of its walk, and not while it stands still, before it comes or after it stops."""
    flags = _mover_flags(MotionDetector(MotionConfig()), size=size, speed=speed, contrast=contrast, noise=noise)
    assert sum(flags["walking"]) >= 0.85 * len(flags["walking"]), flags["walking"]
    assert not any(flags["before"])
    assert not any(flags["standing"])
    assert not any(flags["after"])


def test_the_detector_before_the_slow_channel_missed_small_slow_movers() -> None:
    """The scenes above are the failure they fix: the detector before the slow channel (kept in the
    benchmarks for comparison) flags motion in under half of the walk of the first one."""
    from benchmarks.motion_before import MotionDetector as BeforeDetector

    flags = _mover_flags(BeforeDetector(MotionConfig()), size=0.01, speed=6.0, contrast=25.0, noise=4.0)
    assert sum(flags["walking"]) < 0.5 * len(flags["walking"])


def test_slow_shadow_edge_is_not_motion() -> None:
    """A sharp shadow edge sliding over the scene about as slowly as the small movers above walk (across
    the frame and beyond in 60 s) only darkens what it passes: no motion, though it changes as much
    over the second look's time as they do. (The detector before the slow channel flagged it once.)"""
    bg = texture()
    rng = np.random.default_rng(5)
    detector = MotionDetector(MotionConfig())
    with np.errstate(over="ignore"):  # far from a sharp edge its logistic saturates to exactly 0 or 1
        results = [detector.update(render(bg * _shade(i / FPS, 10, 60, 0.5, 6), rng), i / FPS)
                   for i in range(int(75 * FPS))]
    assert [r.ts for r in results if r.motion and r.ts >= 3.0] == []


def _both_ways_one_box(brighter: np.ndarray, changed: np.ndarray, box: np.ndarray) -> bool:
    """The both-ways rule for one box, written out plainly (slices and counts), as a reference."""
    x, y, w, h = (int(v) for v in box)
    around = (slice(max(0, y - 4), y + h + 4), slice(max(0, x - 4), x + w + 4))
    mask = changed[around] > 0
    total = int(mask.sum())
    up = int((mask & (brighter[around] > 0)).sum())
    return total > 0 and min(up, total - up) >= 0.1 * total


def test_both_ways_on_integral_images_matches_counting_box_by_box() -> None:
    """The second look's both-ways rule counts every box on two integral images at once; it must say what
    counting each box's pixels says, at the frame's edges too, and within a region cut from the frame."""
    from edged.analysis.motion.detector import _around, _both_ways

    rng = np.random.default_rng(7)
    for _ in range(20):
        changed = (rng.random((60, 90)) < rng.uniform(0.05, 0.6)).astype(np.uint8) * 255
        brighter = (rng.random((60, 90)) < rng.uniform(0.0, 1.0)).astype(np.uint8) * 255
        xs, ys = rng.integers(0, 88, 6), rng.integers(0, 58, 6)
        boxes = np.stack([xs, ys, rng.integers(1, 91 - xs), rng.integers(1, 61 - ys)], axis=1).astype(np.int32)
        expected = [_both_ways_one_box(brighter, changed, box) for box in boxes]
        assert _both_ways(brighter, changed, boxes).tolist() == expected
        y0, y1, x0, x1 = _around(boxes, changed.shape)
        roi = (slice(y0, y1), slice(x0, x1))
        assert _both_ways(brighter[roi], changed[roi], boxes - (x0, y0, 0, 0)).tolist() == expected


@pytest.mark.parametrize("density", [0.001, 0.01, 0.05, 0.45])
def test_components_of_the_blobs_part_match_labelling_the_whole_mask(density: float) -> None:
    """Labelling only the bounding box of the mask's pixels must give the labels (in the same order) and
    statistics of labelling the whole mask: a few blobs or many, more than 256 (16-bit labels), boxes
    starting on odd rows and columns, at the edges too. The background's box is the whole mask."""
    from edged.analysis.motion.detector import _components

    rng = np.random.default_rng(int(density * 1000))
    for i in range(40):
        height, width = int(rng.integers(20, 120)), int(rng.integers(20, 200))
        mask = (rng.random((height, width)) < density).astype(np.uint8) * 255
        if i % 2:
            mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))  # blobs as the detector grows them
        mask[rng.integers(0, height), rng.integers(0, width)] = 255  # never empty
        n, labels, stats = _components(mask)
        n_all, labels_all, stats_all, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_16U)
        assert n == n_all
        assert labels.dtype == (np.uint8 if n <= 256 else np.uint16)
        assert np.array_equal(labels, labels_all)
        assert np.array_equal(stats[1:], stats_all[1:])
        assert stats[0].tolist() == [0, 0, width, height, stats_all[0, cv2.CC_STAT_AREA]]


def test_grown_foreground_on_its_box_matches_filtering_the_whole_frame() -> None:
    """The median and the dilation run only around the foreground's pixels; the result must be that of
    running them on the whole frame (None when the median leaves nothing), at the frame's edges too."""
    from edged.analysis.motion.detector import _grown

    rng = np.random.default_rng(3)
    for i in range(60):
        mask = np.zeros((100, 180), np.uint8)
        for _ in range(int(rng.integers(0, 6))):
            x, y = int(rng.integers(-5, 180)), int(rng.integers(-5, 100))
            mask[max(0, y):y + int(rng.integers(1, 9)), max(0, x):x + int(rng.integers(1, 9))] = 255
        if i % 3 == 0:
            mask |= (rng.random(mask.shape) < 0.01).astype(np.uint8) * 255  # isolated pixels
        whole = cv2.dilate(cv2.medianBlur(mask, 3), np.ones((3, 3), np.uint8))
        grown = _grown(mask)
        if not whole.any():
            assert grown is None
        else:
            assert grown is not None and np.array_equal(grown, whole)
