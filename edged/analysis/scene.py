"""Frame choice for the scheduler: is a frame fit to caption, and has the scene changed since the last caption?

`frame_quality(image)` measures, on a ~320x180 luma copy of the frame:

- `sharpness`: variance of the Laplacian. Motion blur and defocus lower it. Its scale depends on
  the scene (texture, noise), so compare frames of one camera from a short window, not against a
  fixed number; `best_frame` does exactly that.
- `flat`: the share of 10x10 blocks with (almost) no detail. A grey start-up frame is 1.0; a
  half-decoded frame (the bottom filled with grey or smeared blocks) shows a jump in it.

`scene_signature(image, masks)` is a tiny luma thumbnail (about 32x18 cells, area-averaged so
sensor noise averages out), normalised to zero mean and unit spread so a global brightness or
contrast change (dusk, auto-exposure) does not alter it. `signature_distance(a, b)` is the share
of cells that differ by more than `CELL_TOLERANCE` of that spread: 0 for the same scene, about the
covered share of the frame when a person or car appears. `SCENE_CHANGED` is a sensible gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edged.analysis.masks import Polygon, keep_mask

QUALITY_HEIGHT = 180  # rows of the luma copy frame quality is measured on
_BLOCK = 10  # px: block size of the flatness measure
_FLAT_LEVEL = 1.0  # mean |Laplacian| below this: a block without detail
SIGNATURE_ROWS = 18
_SAMPLES = 8  # luma samples per cell side: noise averages down 8x
CELL_TOLERANCE = 0.35  # in units of the thumbnail's own spread (std)
SCENE_CHANGED = 0.01  # a distance above this: worth a new caption (a person at ~1 % of the frame)
MAX_FLAT = 0.98  # frames flatter than this are blank, whatever the others look like
FLAT_JUMP = 0.15  # a frame this much flatter than the best candidate is probably half-decoded
BLUR_RATIO = 0.5  # a frame with less than this share of the sharpest candidate's sharpness is blurred


@dataclass(frozen=True, slots=True)
class FrameQuality:
    """How fit a frame is to be captioned (see the module docstring)."""

    sharpness: float
    flat: float


def _grey(image: np.ndarray, height: int, width: int, interpolation: int) -> np.ndarray:
    small = cv2.resize(image, (width, height), interpolation=interpolation)
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small


def frame_quality(image: np.ndarray) -> FrameQuality:
    """Sharpness and flatness of a BGR (or luma) frame, measured at `QUALITY_HEIGHT` rows."""
    h, w = image.shape[:2]
    cols = max(1, round(w * QUALITY_HEIGHT / h / _BLOCK))
    grey = _grey(image, QUALITY_HEIGHT, cols * _BLOCK, cv2.INTER_LINEAR)
    lap = cv2.Laplacian(grey, cv2.CV_16S)
    _, std = cv2.meanStdDev(lap)
    blocks = cv2.resize(cv2.convertScaleAbs(lap), (cols, QUALITY_HEIGHT // _BLOCK), interpolation=cv2.INTER_AREA)
    flat = float(np.count_nonzero(blocks < _FLAT_LEVEL)) / blocks.size
    return FrameQuality(float(std[0, 0]) ** 2, flat)


def best_frame(candidates: Sequence[tuple[FrameQuality, float]]) -> int | None:
    """Index of the frame to caption among `(quality, motion_area)` candidates, or None when all are blank.

    Frames that are blank (`flat > MAX_FLAT`), much flatter than the best candidate (half-decoded)
    or much blurrier than the sharpest one are set aside; among the rest the one with the most
    motion area wins, ties going to the sharper. If every frame was set aside for blur or
    flatness, the least flat, then sharpest, is returned rather than nothing.
    """
    if not candidates:
        return None
    least_flat = min(q.flat for q, _ in candidates)
    sharpest = max(q.sharpness for q, _ in candidates)
    alive = [i for i, (q, _) in enumerate(candidates) if q.flat <= MAX_FLAT]
    if not alive:
        return None
    good = [i for i in alive if candidates[i][0].flat <= least_flat + FLAT_JUMP
            and candidates[i][0].sharpness >= BLUR_RATIO * sharpest]
    if good:
        return max(good, key=lambda i: (candidates[i][1], candidates[i][0].sharpness))
    return min(alive, key=lambda i: (candidates[i][0].flat, -candidates[i][0].sharpness))


@dataclass(frozen=True, eq=False)
class SceneSignature:
    """A normalised luma thumbnail; `valid` marks the cells outside privacy/motion masks."""

    cells: np.ndarray  # float32 (rows, cols), zero mean and unit spread over the valid cells
    valid: np.ndarray  # bool (rows, cols)


def scene_signature(image: np.ndarray, masks: Sequence[Polygon] = ()) -> SceneSignature:
    """The signature of a BGR (or luma) frame; cells mostly inside `masks` are left out."""
    h, w = image.shape[:2]
    cols = max(1, round(w * SIGNATURE_ROWS / h))
    grey = _grey(image, _SAMPLES * SIGNATURE_ROWS, _SAMPLES * cols, cv2.INTER_NEAREST)
    cells = cv2.resize(grey.astype(np.float32), (cols, SIGNATURE_ROWS), interpolation=cv2.INTER_AREA)
    keep = keep_mask(masks, _SAMPLES * cols, _SAMPLES * SIGNATURE_ROWS)
    valid = np.ones(cells.shape, bool) if keep is None else \
        cv2.resize(keep, (cols, SIGNATURE_ROWS), interpolation=cv2.INTER_AREA) >= 128
    values = cells[valid]
    if values.size:
        spread = max(float(values.std()), 1.0)  # a flat frame: differences in luma units
        cells = (cells - float(values.mean())) / spread
    cells.flags.writeable = False
    valid.flags.writeable = False
    return SceneSignature(cells, valid)


def signature_distance(a: SceneSignature, b: SceneSignature) -> float:
    """Share of the (commonly valid) cells that changed by more than `CELL_TOLERANCE`; 1.0 if the shapes differ."""
    if a.cells.shape != b.cells.shape:
        return 1.0
    valid = a.valid & b.valid
    count = int(np.count_nonzero(valid))
    if count == 0:
        return 0.0
    changed = np.abs(a.cells - b.cells) > CELL_TOLERANCE
    return float(np.count_nonzero(changed & valid)) / count
