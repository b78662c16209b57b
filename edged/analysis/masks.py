"""Polygon masks: where motion is ignored, and what is blanked before any inference (privacy).

A mask is a polygon of `(x, y)` points in 0..1, fractions of the frame's width and height, so one
config serves every resolution of a camera. Points are rasterised with 1/16-pixel precision.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import cv2
import numpy as np

Point = tuple[float, float]
Polygon = Sequence[Point]
_SHIFT = 4  # fixed-point bits for cv2.fillPoly: sub-pixel polygon corners


def _canonical(masks: Sequence[Polygon]) -> tuple[tuple[Point, ...], ...]:
    return tuple(tuple((float(x), float(y)) for x, y in polygon) for polygon in masks)


def _polygons_px(masks: tuple[tuple[Point, ...], ...], width: int, height: int) -> list[np.ndarray]:
    scale = float(1 << _SHIFT)
    return [np.asarray([(round(x * width * scale), round(y * height * scale)) for x, y in polygon], np.int32)
            for polygon in masks if len(polygon) >= 3]


@functools.lru_cache(maxsize=32)
def _keep_cached(masks: tuple[tuple[Point, ...], ...], width: int, height: int) -> np.ndarray | None:
    polygons = _polygons_px(masks, width, height)
    if not polygons:
        return None
    keep = np.full((height, width), 255, np.uint8)
    for polygon in polygons:  # one at a time: fillPoly with several would leave overlaps unmasked (even-odd)
        cv2.fillPoly(keep, [polygon], 0, lineType=cv2.LINE_8, shift=_SHIFT)
    keep.flags.writeable = False
    return keep


def keep_mask(masks: Sequence[Polygon], width: int, height: int) -> np.ndarray | None:
    """Rasterise `masks` at `width` x `height`: uint8, 255 where pixels count, 0 inside a mask.

    Returns None when there is nothing to mask (callers skip the masking step). The result is
    cached per (masks, size) and read-only.
    """
    return _keep_cached(_canonical(masks), int(width), int(height))


def apply_masks(image: np.ndarray, masks: Sequence[Polygon], fill: int | tuple[int, ...] = 0) -> np.ndarray:
    """A copy of `image` (H x W or H x W x C) with every mask polygon filled with `fill`.

    Use it on full frames before they go to a model or leave the device (snapshots): whatever a
    privacy mask covers is gone from the pixels, not just ignored. With no masks the image itself is
    returned (no copy; frames are read-only, so sharing is safe).
    """
    keep = keep_mask(masks, image.shape[1], image.shape[0])
    if keep is None:
        return image
    out: np.ndarray = image.copy()
    out[keep == 0] = fill
    return out
