"""Image preprocessing exactly as GLM-Edge-V's processor does it (transformers' Mllama, one tile).

The long side is scaled to the tile size (up or down) keeping the aspect ratio, the short side rounded
down; the resize is PIL's bicubic (what the PIL backend of `MllamaImageProcessor` uses); the image
sits at the top-left of a zero canvas (pad bottom/right with pixel value 0, i.e. -1.0 once
normalised); then pixels are rescaled by 1/255 and normalised with mean = std = 0.5.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from edged.inference.manifest import Preprocessing

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def fit_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) of an image fitted into a `size` x `size` tile, aspect kept, short side floored."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image has no pixels ({width}x{height})")
    scale_h, scale_w = size / height, size / width
    if scale_w < scale_h:
        return min(math.floor(height * scale_w) or 1, size), size
    return size, min(math.floor(width * scale_h) or 1, size)


def to_rgb(image: np.ndarray, order: str = "bgr") -> np.ndarray:
    """An HxWx3 uint8 RGB array from a BGR (OpenCV) or RGB frame, or a gray HxW one."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
    rgb = image[:, :, :3]
    return np.ascontiguousarray(rgb[:, :, ::-1] if order == "bgr" else rgb)


def resize_and_pad(rgb: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """The uint8 HxWx3 tile: resized content at the top-left, the rest `pad_value_pixel`."""
    if spec.fit != "mllama_single_tile" or spec.pad != "bottom_right":
        raise ValueError(f"unsupported preprocessing {spec.fit}/{spec.pad}")
    h, w = fit_size(rgb.shape[0], rgb.shape[1], spec.size)
    resized = np.asarray(Image.fromarray(rgb).resize((w, h), resample=_RESAMPLE[spec.resample]))
    tile = np.full((spec.size, spec.size, 3), spec.pad_value_pixel, np.uint8)
    tile[:h, :w] = resized
    return tile


def normalize(tile: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """uint8 HxWx3 -> float32 [1, 3, H, W], rescaled then normalised."""
    x = (tile.astype(np.float64) * spec.rescale_factor).astype(np.float32)
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def pixel_values(image: np.ndarray, spec: Preprocessing, order: str = "bgr") -> np.ndarray:
    """The vision encoder's input for one frame."""
    return normalize(resize_and_pad(to_rgb(image, order), spec), spec)
