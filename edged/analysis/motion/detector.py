"""`MotionDetector`: motion on low-resolution luma, robust to lighting, noise and swaying leaves.

Per analysed frame (all on a ~180x100 luma image, a few dozen vectorised operations):

1. **Luma**: nearest-neighbour downscale first, then grey (cheap at any input size), 3x3 blur.
2. **Photometric compensation**: the frame and the background are averaged over a coarse grid of
   cells (5 rows); the per-cell brightness ratio, median-filtered over neighbouring cells so that
   one object cannot move it, is upsampled into a smooth gain field that maps the background to
   the current lighting. Lamps, dusk, cloud shadows and auto-exposure changes cancel out; a person
   (a few cells at most) does not.
3. **Per-pixel thresholds**: a pixel is foreground when it differs from the compensated background
   by more than `max(threshold, noise_factor x its own noise)`. The noise is an envelope of each
   pixel's squared differences (rising within seconds, falling over tens of seconds) learnt outside
   the foreground, so sensor noise at night and leaves swaying in gusts raise their own thresholds
   while still parts of the scene stay sensitive, and a person standing still does not make their
   spot blind. `improve_contrast` scales `threshold` by the scene's luma range (as if the frame were
   stretched to 0..255). The same test runs on a **slow channel**, the frame averaged over
   `_SLOW_TIME` with its own noise envelope: about half as noisy, so a small, faint figure that the
   frame's envelope swallows still stands out there while it moves less than its size in that
   time. Most frames end here: nothing differs in either, so nothing else is computed. When only
   the slow channel differs, only it is compared again under the compensated light: a frame that
   matches the background as it is stays still, and the frame's noise learns from that difference,
   as in the detector before the slow channel.
4. **Blobs**: isolated foreground pixels are removed (3x3 median), the rest dilated and split into
   connected components. A component is a candidate when its area reaches `contour_area` and a
   tenth of it changed since the previous frame; it is motion when a candidate was also near it in
   the previous frame (one-frame flickers from keyframes or gusts are not). The others get a
   **second look**: a slow mover shifts by a fraction of a pixel per frame, so a component is also a
   candidate when a tenth of it changed since a frame `_CHANGE_AGE` old (in the channel that shows
   each pixel, under the light of now), and the change goes both ways: a moving object covers the
   scene on one side and uncovers it on the other, while a shadow's edge sliding by, or the trail
   of something gone fading, only darkens or only brightens. A component that has stopped changing
   (a parked car, the hole a leaving one left) is not motion and is absorbed into the background
   within about `_ABSORB_TIME`.
5. **Light changes**: when most grid cells jump in brightness at once (lights on/off, IR switch,
   lightning) or more than `lightning_threshold` of the frame is foreground, the background is
   re-seeded from the current frame and the detector reports `calibrating` (no motion) until the
   scene has settled (auto-exposure done).
6. **State**: ON with the first motion frame, OFF after `off_delay` seconds without motion.

Everything that depends only on the config or the frame size (sizes, masks, rates) is decided once.
Cost: at this size most of a frame's time goes to full-frame passes (memory-bound) and to the fixed
cost of OpenCV calls, so the frame's and the slow channel's per-pixel noise, thresholds and
differences are stacked (one call serves both), and everything about blobs (filtering, labelling,
comparing, learning) runs only on the box around them, usually a few percent of the frame.
The detector is not thread-safe for `update` (one camera thread calls it); the setters are, and
take effect from the next frame.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, replace

import cv2
import numpy as np

from edged.analysis.masks import keep_mask
from edged.config.schema import MotionConfig

_GRID_ROWS = 5  # photometric cells: the analysis height is a multiple of this
_RATIO_OFFSET = 8.0  # luma added before brightness ratios, so dark cells do not blow up
_JUMP = 0.2  # a cell whose brightness changed by more than this fraction since the last frame jumped
_JUMP_SHARE = 0.6  # this share of cells jumping together is a light change, not an object
_WARMUP_TIME = 1.0  # s of calibration after the first frame
_SETTLE_TIME = 0.6  # s of calibration after a light change, at least
_SETTLED = 0.03  # ... and until the median cell changes less than this between frames (auto-exposure done)
_MAX_CALIBRATION = 10.0  # s: a scene that never settles is analysed anyway
_CALIBRATE_TIME = 0.3  # s: background time constant while calibrating
_ABSORB_TIME = 1.0  # s: a blob that stopped changing fades into the background this fast
_MOVING_TIME = 60.0  # s: even moving pixels blend in this slowly (nothing stays motion forever)
_NOISE_RISE = 3.0  # s: time constant of the per-pixel noise envelope when it rises
_NOISE_FALL = 20.0  # s: ... and when it falls
_RANGE_EVERY = 2.0  # s between updates of the scene's luma range (improve_contrast)
_NOISE_EVERY = 0.35  # s between updates of the noise estimate (it changes slowly)
_LIGHT_CHANGING = 0.02  # the whole scene's brightness differs this much from the background's
_SAME_LIGHT = 0.02  # gain-field deviation below which compensation is skipped (< ~4 luma)
_INITIAL_NOISE = 2.5  # luma: assumed noise before any is measured
_MIN_THRESHOLD = 3.0  # luma: no pixel threshold goes below this
_MIN_SPAN = 32.0  # luma: contrast scaling never treats a scene as flatter than this
_MOVING_SHARE = 0.1  # share of a blob that must have changed since the last frame
_NEAR = 4  # px: a blob must come this close to a candidate of the last frame (persistence)
_BOTH_WAYS = 0.1  # share of a slow blob that must change the other way than most of it
_SLOW_TIME = 0.5  # s: time constant of the slow channel (the frame averaged over a few frames)
_CHANGE_AGE = 0.6  # s: the second look compares with a frame at least this old (a stopped blob: this long)
_SQUARE = np.ones((3, 3), np.uint8)  # 3 x 3 structuring element (dilation by a pixel)
_MAX_DT = 1.0  # s: a longer gap between frames (a stall) is treated as this long


@dataclass(frozen=True, slots=True)
class MotionBox:
    """A moving region in normalised coordinates (0..1 of width and height), corners inclusive-exclusive."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def area(self) -> float:
        return (self.x1 - self.x0) * (self.y1 - self.y0)


@dataclass(frozen=True, slots=True)
class MotionResult:
    """What one analysed frame showed.

    `motion` is true when something moves in this frame; it is never true while `calibrating`
    (the detector is learning a changed scene: start-up, lights, IR switch) or when disabled.
    `area` is the moving share of the analysed (unmasked) frame. `active` is the debounced state
    published as ON/OFF: it turns on with the first motion frame and off `off_delay` seconds after
    the last one; `changed` is true on the frame where `active` flipped.
    """

    ts: float
    motion: bool
    area: float
    boxes: tuple[MotionBox, ...]
    calibrating: bool
    active: bool
    changed: bool


@dataclass(frozen=True, slots=True)
class _Params:
    """The settings MQTT can change at run time (swapped whole, so a frame sees one consistent set)."""

    threshold: int
    contour_area: int
    enabled: bool


@dataclass(slots=True)
class _Kept:
    """A frame kept for later comparisons: its luma, the slow channel then, and (computed at most once,
    when first needed) their grid cells for relighting."""

    ts: float
    luma: np.ndarray
    slow: np.ndarray
    cells: np.ndarray | None = None
    slow_cells: np.ndarray | None = None


@dataclass(frozen=True)
class _Geometry:
    """Static facts of one input frame size."""

    width: int
    height: int
    cols: int
    keep: np.ndarray | None  # analysis-size mask: 255 analysed, 0 masked
    keep2: np.ndarray | None  # the same twice, for stacked arrays
    masked: np.ndarray | None  # boolean, True where masked
    valid: int  # analysed pixels


class _Model:
    """The background of one frame size: mean, per-pixel noise, previous frame, calibration."""

    def __init__(self, luma: np.ndarray, ts: float, noise_factor: float) -> None:
        self.mean: np.ndarray = luma.copy()
        # The slow channel: the frame averaged over ~_SLOW_TIME, with its own (lower) noise.
        self.slow: np.ndarray = luma.copy()
        # Per-pixel noise, its thresholds and the differences they judge are kept for both channels at
        # once, the frame's on top of the slow channel's (`_stacked`): one OpenCV call then does the
        # work of two, and per call overhead is much of the cost at this size.
        # The noise envelope is kept as (noise_factor x noise)^2: its square root is the threshold at once.
        self.var = _stacked(luma)
        self.var[:luma.shape[0]] = (noise_factor * _INITIAL_NOISE) ** 2
        self.var[luma.shape[0]:] = (noise_factor * 0.5 * _INITIAL_NOISE) ** 2  # the slow channel: half as noisy
        self.noise_thr = np.sqrt(self.var)
        self.thr = _stacked(luma)  # max(noise_thr, floor), rebuilt when either changes (`stale`)
        self.diff = _stacked(luma)  # |frame - background| over |slow channel - background|
        self.stale = True
        # The frames of the last ~_CHANGE_AGE s: what a blob's change is measured against
        self.history: deque[_Kept] = deque()
        self.floor = 0.0
        self.noise_at = ts
        self.light_changing = False  # the whole scene is lit differently from the background (see _compensate)
        self.prev_boxes: np.ndarray = np.zeros((0, 4), np.int32)  # candidate blobs of the last frame (x, y, w, h)
        self.prev_cells: np.ndarray | None = None
        self.mean_cells: np.ndarray | None = None  # cell means of `mean`, kept in step while blends are uniform
        self.calibrating = True
        self.calibration_started = ts
        self.calibrating_until = ts + _WARMUP_TIME
        self.last_ts = ts
        self.span = 255.0
        self.span_at = -math.inf


def _stacked(luma: np.ndarray) -> np.ndarray:
    """An uninitialised array for the frame's values (top half) and the slow channel's (bottom half)."""
    return np.empty((2 * luma.shape[0], *luma.shape[1:]), luma.dtype)


def _halves(both: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The frame's half and the slow channel's half of a stacked array (views)."""
    half = both.shape[0] // 2
    return both[:half], both[half:]


class _OnOff:
    """The debounced motion state."""

    def __init__(self, off_delay: float) -> None:
        self.off_delay = off_delay
        self.active = False
        self.last_motion = -math.inf

    def step(self, motion: bool, ts: float) -> bool:
        """Advance to `ts`; returns whether `active` changed."""
        if motion:
            self.last_motion = ts
            if not self.active:
                self.active = True
                return True
            return False
        if self.active and ts - self.last_motion >= self.off_delay:
            self.active = False
            return True
        return False

    def force_off(self) -> bool:
        was, self.active = self.active, False
        return was


class MotionDetector:
    """Motion detection for one camera. See the module docstring for the method."""

    def __init__(self, config: MotionConfig) -> None:
        self._config = config
        self._params = _Params(config.threshold, config.contour_area, config.enabled)
        self._lock = threading.Lock()
        self._cell = max(4, round(config.frame_height / _GRID_ROWS))
        self._height = self._cell * _GRID_ROWS
        self._noise_factor = config.noise_factor
        self._geometry: dict[tuple[int, int], _Geometry] = {}
        self._model: _Model | None = None
        self._model_shape: tuple[int, int] | None = None
        self._reset = False
        self._state = _OnOff(config.off_delay)
        self.foreground: np.ndarray | None = None  # last frame's dilated foreground (for reports)

    # --- run-time settings (thread-safe) ---------------------------------------------------------

    @property
    def threshold(self) -> int:
        return self._params.threshold

    @property
    def contour_area(self) -> int:
        return self._params.contour_area

    @property
    def enabled(self) -> bool:
        return self._params.enabled

    def set_threshold(self, value: int) -> None:
        """Luma change that counts as moving (1..255), from the next frame."""
        if isinstance(value, bool) or not 1 <= int(value) <= 255 or int(value) != value:
            raise ValueError(f"threshold must be a whole number in 1..255 (got {value!r})")
        self._swap(threshold=int(value))

    def set_contour_area(self, value: int) -> None:
        """Smallest moving blob (pixels at the analysis height, >= 1), from the next frame."""
        if isinstance(value, bool) or int(value) != value or int(value) < 1:
            raise ValueError(f"contour_area must be a whole number >= 1 (got {value!r})")
        self._swap(contour_area=int(value))

    def set_enabled(self, value: bool) -> None:
        """Turn detection on or off. Off reports no motion (state OFF); on recalibrates first."""
        if not isinstance(value, bool):
            raise ValueError(f"enabled must be true or false (got {value!r})")
        self._swap(enabled=value)

    def _swap(self, **changes: int | bool) -> None:
        with self._lock:
            self._params = replace(self._params, **changes)  # type: ignore[arg-type]

    def reset(self) -> None:
        """Forget the background: the next frame starts a new calibration (safe from any thread)."""
        self._reset = True

    # --- analysis ---------------------------------------------------------------------------------

    def update(self, image: np.ndarray, ts: float) -> MotionResult:
        """Analyse one frame (BGR, or single-channel luma) taken at `ts` seconds (monotonic or stream time)."""
        params = self._params
        if not params.enabled:
            self._model = self.foreground = None
            return MotionResult(ts, False, 0.0, (), False, False, self._state.force_off())
        if image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 BGR or luma image, got {image.dtype} {image.shape}")
        geo = self._geometry_for(image)
        luma8 = self._luma(image, geo)
        luma = luma8.astype(np.float32)
        model = self._model
        if model is None or self._reset or self._model_shape != image.shape[:2]:
            self._model, self._model_shape, self._reset = _Model(luma, ts, self._noise_factor), image.shape[:2], False
            self.foreground = None
            return self._result(ts, False, 0.0, (), True)
        if geo.masked is not None:  # masked pixels never change: they show the background
            np.copyto(luma, model.mean, where=geo.masked)
        dt = min(_MAX_DT, max(0.0, ts - model.last_ts))
        model.last_ts = ts
        if model.calibrating:
            cells = self._cells(luma, geo)
            self._calibration_step(model, luma, cells, dt, ts, self._light_jump(model, cells))
            return self._result(ts, False, 0.0, (), True)
        return self._analyse(model, luma, luma8, params, geo, dt, ts)

    def _analyse(self, model: _Model, luma: np.ndarray, luma8: np.ndarray, params: _Params, geo: _Geometry,
                 dt: float, ts: float) -> MotionResult:
        """One frame of a calibrated detector."""
        cv2.accumulateWeighted(luma, model.slow, _alpha(dt, _SLOW_TIME))
        thr, slow_thr = _halves(self._thresholds(model, params, luma8, ts))
        diff, slow_diff = _halves(model.diff)
        cv2.absdiff(luma, model.mean, dst=diff)
        cv2.absdiff(model.slow, model.mean, dst=slow_diff)
        fast, slow = _halves(self._over(model.diff, model.thr, geo.keep2))
        still = quiet = not cv2.countNonZero(fast)  # still: the frame itself matches the background
        if quiet and cv2.countNonZero(slow):
            # The slow channel is the more sensitive: an overall drift of the light (auto-exposure,
            # dusk) shows there first. Scaled to the background's overall brightness, is it quiet?
            gain = cv2.mean(model.mean)[0] / max(1.0, cv2.mean(model.slow)[0])
            cv2.absdiff(cv2.multiply(model.slow, gain, dst=slow_diff), model.mean, dst=slow_diff)
            quiet = not cv2.countNonZero(self._over(slow_diff, slow_thr, geo.keep))
        if quiet:  # the common case: nothing differs
            self._quiet(model, luma, dt, ts)
            return self._result(ts, False, 0.0, (), False)
        cells = self._cells(luma, geo)
        if self._light_jump(model, cells) is None:
            self._calibration_step(model, luma, cells, dt, ts, None)
            return self._result(ts, False, 0.0, (), True)
        model.prev_cells = cells
        now = _Kept(ts, luma, model.slow.copy(), cells)
        expected = self._compensate(model, cells, geo)
        if expected is not model.mean:
            if not still:  # (a frame that matched the background as it was is still, as before the slow channel)
                cv2.absdiff(luma, expected, dst=diff)
                fast = self._over(diff, thr, geo.keep)
            # The slow channel lags the light a little: it is compared under its own (overall) light.
            # (The mean of the cells is the mean of the image: equal cells. Plus the offset both have.)
            lag = (cv2.mean(model.slow)[0] + _RATIO_OFFSET) / cv2.mean(cells)[0]
            cv2.absdiff(model.slow, _scaled(expected, lag), dst=slow_diff)
            slow = self._over(slow_diff, slow_thr, geo.keep)
        fg = slow if still else cv2.bitwise_or(fast, slow)
        if cv2.countNonZero(fg) > self._config.lightning_threshold * geo.valid:
            self._calibration_step(model, luma, cells, dt, ts, None)
            return self._result(ts, False, 0.0, (), True)
        boxes, area, grown = self._detect(model, now, fg, fast, params, geo, dt)
        self._learn_noise(model, grown, ts)
        self.foreground = grown
        if grown is None:
            model.prev_boxes = model.prev_boxes[:0]
        return self._result(ts, bool(boxes), area, boxes, False)

    @staticmethod
    def _over(diff: np.ndarray, thr: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
        """Pixels whose difference exceeds their threshold (uint8 mask, 0 where `keep` is)."""
        fg = cv2.compare(diff, thr, cv2.CMP_GT)
        if keep is not None:
            cv2.bitwise_and(fg, keep, dst=fg)
        return fg

    def _quiet(self, model: _Model, luma: np.ndarray, dt: float, ts: float) -> None:
        """A frame where nothing moved: the background follows it and the noise estimate learns from it."""
        self._blend(model.mean, luma, _alpha(dt, self._config.background_time), None)
        model.mean_cells = None
        self._learn_noise(model, None, ts)
        _remember(model, _Kept(ts, luma, model.slow.copy()))
        model.prev_boxes, self.foreground = model.prev_boxes[:0], None

    def _result(self, ts: float, motion: bool, area: float, boxes: tuple[MotionBox, ...],
                calibrating: bool) -> MotionResult:
        changed = self._state.step(motion, ts)
        return MotionResult(ts, motion, area, boxes, calibrating, self._state.active, changed)

    def _geometry_for(self, image: np.ndarray) -> _Geometry:
        shape = image.shape[:2]
        geo = self._geometry.get(shape)
        if geo is None:
            if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
                raise ValueError(f"expected a uint8 BGR or luma image, got {image.dtype} {image.shape}")
            cols = max(1, round(shape[1] * self._height / shape[0] / self._cell))
            width = cols * self._cell
            keep = keep_mask(self._config.masks, width, self._height)
            masked = None if keep is None else keep == 0
            valid = width * self._height if keep is None else max(1, cv2.countNonZero(keep))
            keep2 = None if keep is None else np.vstack([keep, keep])
            geo = self._geometry[shape] = _Geometry(width, self._height, cols, keep, keep2, masked, valid)
        return geo

    @staticmethod
    def _luma(image: np.ndarray, geo: _Geometry) -> np.ndarray:
        """Blurred low-resolution luma (uint8): downscale first, so the colour conversion is cheap."""
        small = cv2.resize(image, (geo.width, geo.height), interpolation=cv2.INTER_NEAREST)
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        return cv2.GaussianBlur(small, (3, 3), 0)

    @staticmethod
    def _cells(luma: np.ndarray, geo: _Geometry) -> np.ndarray:
        """Mean brightness of each grid cell (plus the ratio offset)."""
        return cv2.resize(luma, (geo.cols, _GRID_ROWS), interpolation=cv2.INTER_AREA) + _RATIO_OFFSET

    @staticmethod
    def _light_jump(model: _Model, cells: np.ndarray) -> float | None:
        """None when most cells jumped in brightness since the last frame, else the median cell change.

        The median is only needed while calibrating (to see auto-exposure settle), so it is skipped otherwise.
        """
        if model.prev_cells is None:
            return 0.0
        change = np.abs(cells / model.prev_cells - 1.0)
        if np.count_nonzero(change > _JUMP) >= _JUMP_SHARE * change.size:
            return None
        return float(np.median(change)) if model.calibrating else 0.0

    def _calibration_step(self, model: _Model, luma: np.ndarray, cells: np.ndarray, dt: float, ts: float,
                          change: float | None) -> None:
        """A light change (`change` None) restarts the background from this frame; otherwise follow the
        scene quickly and stop calibrating once it has settled."""
        if change is None:
            model.mean = luma.copy()
            model.slow = luma.copy()
            if not model.calibrating:
                model.calibrating, model.calibration_started = True, ts
            model.calibrating_until = ts + _SETTLE_TIME
        else:
            self._blend(model.mean, luma, _alpha(dt, _CALIBRATE_TIME), None)
            model.slow = model.mean.copy()
            settled = ts >= model.calibrating_until and change < _SETTLED
            if settled or ts - model.calibration_started >= _MAX_CALIBRATION:
                model.calibrating, model.span_at = False, -math.inf
        model.prev_cells, model.mean_cells, self.foreground = cells, None, None
        model.prev_boxes = model.prev_boxes[:0]
        model.history.clear()

    def _compensate(self, model: _Model, cells: np.ndarray, geo: _Geometry) -> np.ndarray:
        """The background as it would look under the current frame's lighting (a smooth gain field)."""
        if model.mean_cells is None:
            model.mean_cells = self._cells(model.mean, geo)
        ratio = cv2.medianBlur(cells / model.mean_cells, 3)
        model.light_changing = abs(cv2.mean(ratio)[0] - 1.0) > _LIGHT_CHANGING  # median-filtered: robust
        low, high, _, _ = cv2.minMaxLoc(ratio)
        if low > 1.0 - _SAME_LIGHT and high < 1.0 + _SAME_LIGHT:
            return model.mean
        gain = cv2.resize(ratio, (geo.width, geo.height), interpolation=cv2.INTER_LINEAR)
        expected: np.ndarray = model.mean + np.float32(_RATIO_OFFSET)  # one temporary, the rest in place
        np.multiply(expected, gain, out=expected)
        expected -= np.float32(_RATIO_OFFSET)
        return expected

    def _thresholds(self, model: _Model, params: _Params, luma8: np.ndarray, ts: float) -> np.ndarray:
        """Per-pixel thresholds of the frame and of the slow channel (stacked): max(noise_factor x its
        noise, threshold scaled to the scene's contrast)."""
        floor = float(params.threshold)
        if self._config.improve_contrast:
            if ts - model.span_at >= _RANGE_EVERY:
                model.span, model.span_at = max(_MIN_SPAN, _span(luma8)), ts
            floor *= model.span / 255.0
        floor = max(_MIN_THRESHOLD, floor)
        if model.stale or floor != model.floor:  # rebuilt in place: cv2.max is ~3x faster than np.maximum here
            cv2.max(model.noise_thr, floor, dst=model.thr)
            model.floor, model.stale = floor, False
        return model.thr

    def _detect(self, model: _Model, now: _Kept, fg: np.ndarray, fast: np.ndarray, params: _Params,
                geo: _Geometry, dt: float) -> tuple[tuple[MotionBox, ...], float, np.ndarray | None]:
        """Boxes, moving share and grown foreground (None when empty); learns the background meanwhile."""
        grown = _grown(fg)
        if grown is not None:
            return self._blobs(model, now, grown, fast, params, geo, dt)
        _remember(model, now)
        alpha = _alpha(dt, self._config.background_time)
        self._blend(model.mean, now.luma, alpha, None)
        if model.mean_cells is not None and now.cells is not None:  # a uniform blend moves the cell means alike
            model.mean_cells += alpha * (now.cells - model.mean_cells)
        return (), 0.0, None

    def _blobs(self, model: _Model, now: _Kept, grown: np.ndarray, fast: np.ndarray, params: _Params,
               geo: _Geometry, dt: float) -> tuple[tuple[MotionBox, ...], float, np.ndarray]:
        """Moving blobs as boxes, their share of the frame and the grown foreground; learns the background.

        A blob is a candidate when it is big enough and part of it changed since a frame `_CHANGE_AGE`
        ago (not just since the last frame: a slow mover shifts by a fraction of a pixel per frame); it
        moves when a candidate was also near it in the previous frame, so a one-frame flicker (a
        keyframe's fresh noise, a leaf in a gust) is not motion.
        """
        _, labels, stats = _components(grown)
        areas = stats[:, cv2.CC_STAT_AREA]
        kept, ref = _remember(model, now)
        enough = np.maximum(2, _MOVING_SHARE * areas)
        big = areas >= params.contour_area
        big[0] = False  # label 0 is the background
        candidate = self._changed_since_last(model, now, kept, fast, labels, stats, big, enough, geo)
        second = np.flatnonzero(big & ~candidate)
        if len(second):  # the others get a second look, over a longer time and in both channels
            candidate[self._second_look(model, now, fast, labels, stats, second, enough, ref, geo)] = True
        ids = np.flatnonzero(candidate)
        boxes = stats[ids, :4]
        moving = ids[_near(boxes, model.prev_boxes)] if len(ids) else ids
        model.prev_boxes = boxes
        self._learn_background(model, now.luma, labels, stats, candidate, dt)
        return _boxes(stats[moving], geo), float(areas[moving].sum()) / geo.valid, grown

    def _learn_background(self, model: _Model, luma: np.ndarray, labels: np.ndarray, stats: np.ndarray,
                          candidate: np.ndarray, dt: float) -> None:
        """Background pixels follow the scene, still blobs are absorbed fast, changing ones very slowly.

        Per-label rates are mapped only in the region holding the blobs; the rest of the frame, all
        background, is one plain blend.
        """
        background = _alpha(dt, self._config.background_time)
        rates = np.full(len(stats), _alpha(dt, _ABSORB_TIME), np.float32)
        rates[candidate] = _alpha(dt, _MOVING_TIME)
        rates[0] = background
        y0, y1, x0, x1 = _around(stats[1:, :4], labels.shape)
        roi = (slice(y0, y1), slice(x0, x1))
        step = cv2.subtract(luma[roi], model.mean[roi])
        cv2.multiply(step, _label_map(labels[roi], rates), dst=step)
        blobs = cv2.add(model.mean[roi], step, dst=step)
        cv2.accumulateWeighted(luma, model.mean, background)
        model.mean[roi] = blobs
        model.mean_cells = None

    def _changed_since_last(self, model: _Model, now: _Kept, kept: _Kept, fast: np.ndarray, labels: np.ndarray,
                            stats: np.ndarray, big: np.ndarray, enough: np.ndarray, geo: _Geometry) -> np.ndarray:
        """Which `big` blobs changed since the previous frame (`kept`): the test of the detector before the
        slow channel, on the frame's own foreground. Only the region around them is looked at."""
        ids = np.flatnonzero(big)
        if not len(ids):
            return big
        y0, y1, x0, x1 = _around(stats[ids, :4], labels.shape)
        roi = (slice(y0, y1), slice(x0, x1))
        if not cv2.countNonZero(fast[roi]):  # blobs only the slow channel shows: nothing to compare
            return np.zeros_like(big)
        prev = kept.luma[roi]
        if model.light_changing:  # compare under the same light (auto-exposure hunting, dusk)
            prev = _scaled(prev, self._relight_gain(kept, now, geo))
        quick = cv2.compare(cv2.absdiff(now.luma[roi], prev), _halves(model.noise_thr)[0][roi], cv2.CMP_GT)
        cv2.bitwise_and(quick, fast[roi], dst=quick)
        changed: np.ndarray = big & (_label_counts(labels[roi], quick, len(stats)) >= enough)
        return changed

    def _second_look(self, model: _Model, now: _Kept, fast: np.ndarray, labels: np.ndarray, stats: np.ndarray,
                     ids: np.ndarray, enough: np.ndarray, ref: _Kept, geo: _Geometry) -> np.ndarray:
        """The blobs among `ids` that changed since the reference frame (under the light of now), both ways.

        A slow mover shifts by a fraction of a pixel per frame, so it shows no change from one frame
        to the next; over `_CHANGE_AGE` it does. But all of a blob getting brighter, or all of it
        darker, is a shadow's edge sliding over the scene or the trail an object left fading: a moving
        object covers the scene on one side and uncovers it on the other.
        """
        # Only the part of the frame around these blobs is looked at: usually a small share of it.
        boxes = stats[ids, :4]
        y0, y1, x0, x1 = _around(boxes, labels.shape)
        roi = (slice(y0, y1), slice(x0, x1))
        ref_luma, ref_slow = ref.luma[roi], ref.slow[roi]
        if model.light_changing:
            ref_luma = _scaled(ref_luma, self._relight_gain(ref, now, geo))
            ref_slow = _scaled(ref_slow, self._relight_gain(ref, now, geo, slow=True))
        changed = self._changed(model, now.luma, fast, ref_luma, ref_slow, roi)
        keep = _label_counts(labels[roi], changed, len(stats))[ids] >= enough[ids]
        ids, boxes = ids[keep], boxes[keep]
        if not len(ids):
            return ids
        brighter = cv2.compare(model.slow[roi], ref_slow, cv2.CMP_GT)
        moving: np.ndarray = ids[_both_ways(brighter, changed, boxes - (x0, y0, 0, 0))]
        return moving

    def _relight_gain(self, before: _Kept, now: _Kept, geo: _Geometry, slow: bool = False) -> float:
        """What puts `before`'s frame (or slow channel) under the light of `now`'s: the mean of the
        median-filtered brightness ratios of their grid cells (auto-exposure and slow light changes; an
        object moves a few cells at most). 1 when the light is the same."""
        gain = cv2.mean(cv2.medianBlur(self._kept_cells(now, geo, slow) / self._kept_cells(before, geo, slow), 3))[0]
        return 1.0 if abs(gain - 1.0) < _SAME_LIGHT else float(gain)

    def _kept_cells(self, kept: _Kept, geo: _Geometry, slow: bool) -> np.ndarray:
        """The grid cells of a kept frame or of its slow channel, computed once."""
        if slow:
            if kept.slow_cells is None:
                kept.slow_cells = self._cells(kept.slow, geo)
            return kept.slow_cells
        if kept.cells is None:
            kept.cells = self._cells(kept.luma, geo)
        return kept.cells

    @staticmethod
    def _changed(model: _Model, luma: np.ndarray, fast: np.ndarray, ref: np.ndarray, ref_slow: np.ndarray,
                 roi: tuple[slice, slice]) -> np.ndarray:
        """Pixels that changed since the reference frame, each judged in the channel that saw it.

        Where the frame itself differs from the background (`fast`), the frame is compared with the
        reference frame; elsewhere (faint objects that only the slow channel shows, and the trail a
        mover leaves in it) the slow channel with the reference's slow channel. So a stopped object
        stops changing `_CHANGE_AGE` after it stops, plus the slow channel's lag for faint ones only.
        `ref` and `ref_slow` are the region `roi` of the frame; so is the result.
        """
        noise, slow_noise = _halves(model.noise_thr)
        changed = cv2.compare(cv2.absdiff(model.slow[roi], ref_slow), slow_noise[roi], cv2.CMP_GT)
        fast_changed = cv2.compare(cv2.absdiff(luma[roi], ref), noise[roi], cv2.CMP_GT)
        cv2.copyTo(fast_changed, fast[roi], changed)
        return changed

    def _learn_noise(self, model: _Model, grown: np.ndarray | None, ts: float) -> None:
        """Every `_NOISE_EVERY` s: update each pixel's noise, an envelope of its squared differences
        (`model.diff`, both channels).

        It rises quickly and falls slowly, so a pixel that is sometimes busy (a leaf in gusts, a
        flickering sign) keeps a high threshold between the gusts. Foreground pixels never raise it,
        so a person standing still does not make their spot insensitive.
        """
        elapsed = ts - model.noise_at
        if elapsed < _NOISE_EVERY:
            return
        model.noise_at = ts
        dt = min(elapsed, _MAX_DT)
        background = None if grown is None else cv2.bitwise_not(np.vstack([grown, grown]))
        _envelope(model.var, model.diff, background, dt, self._noise_factor, model.noise_thr)
        model.stale = True

    @staticmethod
    def _blend(mean: np.ndarray, luma: np.ndarray, alpha: float, mask: np.ndarray | None) -> None:
        if mask is None:
            cv2.accumulateWeighted(luma, mean, alpha)
        else:
            cv2.accumulateWeighted(luma, mean, alpha, mask=mask)


def _grown(fg: np.ndarray) -> np.ndarray | None:
    """The foreground without isolated pixels (3 x 3 median: blobs of 3 x 3 and more stay), dilated by a
    pixel; None when nothing is left. Both filters run only on the box around the foreground's pixels,
    widened by what they can reach (the same result as on the whole frame: outside is all 0)."""
    x, y, w, h = cv2.boundingRect(fg)
    if not w:
        return None
    height, width = fg.shape
    y0, y1, x0, x1 = max(0, y - 2), min(height, y + h + 2), max(0, x - 2), min(width, x + w + 2)
    part = cv2.medianBlur(fg[y0:y1, x0:x1], 3)
    if not cv2.countNonZero(part):
        return None
    grown = np.zeros_like(fg)
    grown[y0:y1, x0:x1] = cv2.dilate(part, _SQUARE)
    return grown


def _components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Connected components (8-connected) of a non-empty mask: their number with the background, the label
    image and the statistics, as `cv2.connectedComponentsWithStats` gives them for the whole mask (but
    for the background's box, always the whole mask here: nothing uses it).

    Only the bounding box of the mask's pixels is labelled: OpenCV's pass costs about the same for a
    few small blobs as for a full frame, so labelling the part that holds them halves a blob frame's
    largest cost (the same labels: see the test). Labels are uint8 when there are at most 256
    (per-label counts and maps then become histograms and LUTs), else 16-bit (OpenCV's statistics pass
    is several times slower with 32-bit).
    """
    x, y, w, h = cv2.boundingRect(mask)
    # OpenCV labels blocks of 2 x 2 pixels: a part starting on even rows and columns numbers the blobs
    # in the same order as the whole mask.
    w, h, x, y = w + x % 2, h + y % 2, x - x % 2, y - y % 2
    n, part, stats, _ = cv2.connectedComponentsWithStats(mask[y:y + h, x:x + w], connectivity=8, ltype=cv2.CV_16U)
    labels = np.zeros(mask.shape, np.uint8 if n <= 256 else np.uint16)
    labels[y:y + h, x:x + w] = part
    stats[1:, cv2.CC_STAT_LEFT] += x
    stats[1:, cv2.CC_STAT_TOP] += y
    # The background (label 0): all of the mask outside the blobs.
    stats[0] = (0, 0, mask.shape[1], mask.shape[0], stats[0, cv2.CC_STAT_AREA] + mask.size - w * h)
    return n, labels, stats


def _boxes(stats: np.ndarray, geo: _Geometry) -> tuple[MotionBox, ...]:
    """Blob statistics (rows of x, y, w, h, ...) as boxes in normalised coordinates."""
    w, h = geo.width, geo.height
    return tuple(MotionBox(x / w, y / h, (x + bw) / w, (y + bh) / h) for x, y, bw, bh, *_ in stats.tolist())


def _remember(model: _Model, now: _Kept) -> tuple[_Kept, _Kept]:
    """Keep this frame (and its slow channel) for later comparisons. Returns the previous frame and the
    reference: the newest kept frame at least `_CHANGE_AGE` old, or the oldest kept one shortly after a
    calibration."""
    history = model.history
    history.append(now)
    while len(history) > 1 and history[1].ts <= now.ts - _CHANGE_AGE:
        history.popleft()
    prev = history[-2] if len(history) > 1 else now
    return prev, history[0]


def _scaled(image: np.ndarray, gain: float) -> np.ndarray:
    """`image` under `gain` times the light: (image + offset) x gain - offset, in one pass (`image` itself
    when the gain is 1)."""
    if gain == 1.0:
        return image
    return cv2.addWeighted(image, gain, image, 0.0, _RATIO_OFFSET * (gain - 1.0))


def _around(boxes: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Rows and columns (y0, y1, x0, x1) of the smallest region holding every box (rows of x, y, w, h)
    widened by `_NEAR` pixels, inside a frame of `shape`."""
    rows = boxes.tolist()  # a few boxes: plain Python beats NumPy calls on tiny arrays
    x0, y0 = min(r[0] for r in rows) - _NEAR, min(r[1] for r in rows) - _NEAR
    x1, y1 = max(r[0] + r[2] for r in rows) + _NEAR, max(r[1] + r[3] for r in rows) + _NEAR
    return max(0, y0), min(shape[0], y1), max(0, x0), min(shape[1], x1)


def _envelope(var: np.ndarray, diff: np.ndarray, background: np.ndarray | None, dt: float, factor: float,
              out: np.ndarray) -> None:
    """Update a noise envelope `var`, kept as `factor` squared times the squared differences, with `diff`
    (rising fast, falling slowly; foreground pixels may only pull it down) and write its square root to
    `out` (`factor` x the noise: one pass less than scaling the root)."""
    square = cv2.multiply(diff, diff, scale=factor * factor)
    rising = cv2.compare(square, var, cv2.CMP_GT)
    cv2.accumulateWeighted(square, var, _alpha(dt, _NOISE_FALL), mask=cv2.bitwise_not(rising))
    if background is not None:  # foreground is not noise: it may only pull the estimate down
        cv2.bitwise_and(rising, background, dst=rising)
    cv2.accumulateWeighted(square, var, _alpha(dt, _NOISE_RISE), mask=rising)
    cv2.sqrt(var, dst=out)


def _both_ways(brighter: np.ndarray, changed: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """For each of `boxes` (rows of x, y, w, h): whether the changed pixels in and around it changed both
    ways, at least `_BOTH_WAYS` of them got brighter and as many darker. Around: a slow mover's blob can
    split in two, the side it covers and the side it uncovers. Counted on integral images (two passes
    over the region, then four look-ups a box; plain Python: a handful of boxes is cheaper so than with
    NumPy calls on tiny arrays)."""
    total = cv2.integral(changed)  # sums of 255s: the shares below do not need them divided
    up = cv2.integral(cv2.bitwise_and(brighter, changed))
    height, width = changed.shape
    result = []
    for x, y, w, h in boxes.tolist():
        x0, y0 = max(0, x - _NEAR), max(0, y - _NEAR)
        x1, y1 = min(width, x + w + _NEAR), min(height, y + h + _NEAR)
        n = total.item(y1, x1) - total.item(y0, x1) - total.item(y1, x0) + total.item(y0, x0)
        n_up = up.item(y1, x1) - up.item(y0, x1) - up.item(y1, x0) + up.item(y0, x0)
        result.append(n > 0 and min(n_up, n - n_up) >= _BOTH_WAYS * n)
    return np.asarray(result, bool)


def _label_counts(labels: np.ndarray, mask: np.ndarray | None, n: int) -> np.ndarray:
    """Pixels of each of the `n` labels, counting only under `mask` (uint8, nonzero) when given."""
    if labels.dtype == np.uint8:
        return cv2.calcHist([labels], [0], mask, [256], [0, 256]).ravel()[:n]
    return np.bincount((labels if mask is None else labels[mask > 0]).ravel(), minlength=n)


def _label_map(labels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`values[label]` for every pixel, in the dtype of `values`."""
    if labels.dtype == np.uint8:
        table = np.zeros(256, values.dtype)
        table[:len(values)] = values
        return cv2.LUT(labels, table)
    return np.asarray(values[labels])


def _near(boxes: np.ndarray, others: np.ndarray) -> list[bool]:
    """For each of `boxes` (rows of x, y, w, h): whether it comes within `_NEAR` pixels of any of `others`
    (plain Python: a handful of boxes each)."""
    near = [(ox - _NEAR, oy - _NEAR, ox + ow + _NEAR, oy + oh + _NEAR) for ox, oy, ow, oh in others.tolist()]
    return [any(a < x + w and x < c and b < y + h and y < d for a, b, c, d in near)
            for x, y, w, h in boxes.tolist()]


def _span(luma8: np.ndarray) -> float:
    """Luma range between the 4th and 96th percentiles (from a histogram: cheap, exact to one level)."""
    cumulative = cv2.calcHist([luma8], [0], None, [256], [0, 256]).ravel().cumsum()
    total = cumulative[-1]
    lo, hi = np.searchsorted(cumulative, (0.04 * total, 0.96 * total))
    return float(hi - lo)


def _alpha(dt: float, time_constant: float) -> float:
    """Blend weight of one frame `dt` seconds long for an exponential average with this time constant."""
    return 1.0 - math.exp(-dt / time_constant) if time_constant > 0 else 1.0
