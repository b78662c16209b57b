"""A re-implementation of Frigate's "improved" motion detector: the baseline of `python -m benchmarks motion`.

Written from the published description of the algorithm (../shared/anchors.md section c: Frigate's
`ImprovedMotionDetector` and its defaults), not from Frigate's code. It takes the luma plane at the
detect resolution, as Frigate does (Frigate gets it for free from ffmpeg's yuv420p output):

resize to `frame_height` (nearest) -> contrast stretch between the running means of the 4th/96th
percentiles (a 50-entry ring, initialised to 0/255) -> masked pixels to 0 -> 3x3 Gaussian blur ->
difference with the running average -> threshold, one 3x3 dilation, external contours -> boxes of
contours larger than `contour_area`; calibration off once under 5 % of the frame moves in at most 4
boxes, on again above `lightning_threshold`; the average blends at 0.2 while calibrating, else at
`frame_alpha`, and during motion only once it has lasted 10 frames. The PTZ and
`skip_motion_threshold` branches (off by default) are left out.

A frame counts as motion when it has boxes and the detector is not calibrating: that is what gates
Frigate's object detector.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import cv2
import numpy as np

from edged.analysis.masks import Polygon, keep_mask

_RING = 50
_MOTION_FRAMES_BEFORE_BLEND = 10
_CALIBRATING_ALPHA = 0.2
_CALIBRATED_SHARE = 0.05
_CALIBRATED_BOXES = 4

_KERNEL = np.ones((3, 3), np.uint8)  # one 3x3 dilation
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in input pixels


class FrigateMotionBaseline:
    """Frigate's improved motion detector with its default settings (see the module docstring)."""

    def __init__(self, frame_shape: tuple[int, int], threshold: int = 30, contour_area: int = 10,
                 frame_height: int = 100, improve_contrast: bool = True, lightning_threshold: float = 0.8,
                 frame_alpha: float = 0.01, masks: Sequence[Polygon] = ()) -> None:
        height, width = frame_shape
        self.resize_factor = height / frame_height
        self.size = (int(width / self.resize_factor), frame_height)
        self.threshold = threshold
        self.contour_area = contour_area
        self.improve_contrast = improve_contrast
        self.lightning_threshold = lightning_threshold
        self.frame_alpha = frame_alpha
        keep = keep_mask(masks, *self.size)
        self.masked = None if keep is None else keep == 0
        self.avg = np.zeros((self.size[1], self.size[0]), np.float32)
        self.ring: deque[tuple[float, float]] = deque([(0.0, 255.0)] * _RING, maxlen=_RING)
        self._ring_sum = [0.0, 255.0 * _RING]  # running sums of the ring's lows and highs
        self.calibrating = True
        self.motion_frames = 0
        self.last_mask: np.ndarray | None = None  # the dilated threshold image of the last frame (reports)

    def detect(self, luma: np.ndarray) -> list[Box]:
        """Motion boxes of one luma frame (H x W uint8, the frame_shape given at construction)."""
        small = cv2.resize(luma, self.size, interpolation=cv2.INTER_NEAREST)
        if self.improve_contrast:
            small = self._stretch(small)
        if self.masked is not None:
            small[self.masked] = 0
        blurred = cv2.GaussianBlur(small, (3, 3), 1.0, borderType=cv2.BORDER_REFLECT)
        diff = cv2.absdiff(blurred, cv2.convertScaleAbs(self.avg))
        _, binary = cv2.threshold(diff, self.threshold, 255, cv2.THRESH_BINARY)
        binary = cv2.dilate(binary, _KERNEL)
        self.last_mask = binary
        contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        boxes: list[Box] = []
        total_area = 0.0
        f = self.resize_factor
        for contour in contours:
            area = cv2.contourArea(contour)
            total_area += area
            if area > self.contour_area:
                x, y, w, h = cv2.boundingRect(contour)
                boxes.append((int(x * f), int(y * f), int((x + w) * f), int((y + h) * f)))
        share = total_area / (self.size[0] * self.size[1])
        if self.calibrating and share < _CALIBRATED_SHARE and len(boxes) <= _CALIBRATED_BOXES:
            self.calibrating = False
        if share > self.lightning_threshold:
            self.calibrating = True
        self._learn(blurred, bool(boxes))
        return boxes

    def is_motion(self, luma: np.ndarray) -> bool:
        """`detect`, reduced to what gates Frigate's object detection."""
        boxes = self.detect(luma)
        return bool(boxes) and not self.calibrating

    def _stretch(self, small: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(small, (4, 96))
        if small.min() == small.max():  # a single colour: nothing to stretch
            return small
        old_lo, old_hi = self.ring[0]
        self.ring.append((float(lo), float(hi)))
        self._ring_sum[0] += float(lo) - old_lo
        self._ring_sum[1] += float(hi) - old_hi
        avg_lo, avg_hi = self._ring_sum[0] / _RING, self._ring_sum[1] / _RING
        if avg_hi <= avg_lo:
            return small
        clipped = np.clip(small, avg_lo, avg_hi)
        return np.asarray((clipped - avg_lo) * (255.0 / (avg_hi - avg_lo)), np.uint8)

    def _learn(self, blurred: np.ndarray, motion: bool) -> None:
        alpha = _CALIBRATING_ALPHA if self.calibrating else self.frame_alpha
        if not motion:
            cv2.accumulateWeighted(blurred, self.avg, alpha)
            self.motion_frames = 0
            return
        self.motion_frames += 1
        if self.motion_frames >= _MOTION_FRAMES_BEFORE_BLEND:
            cv2.accumulateWeighted(blurred, self.avg, alpha)
