"""The images a request carries -> the one BGR frame the model takes: base64 decoded, sizes checked
before anything is decompressed, decoded by Pillow (JPEG, PNG, WebP, BMP, GIF), several tiled into
one picture. Pure functions; every failure is an `ApiError` (400 not an image, 413 too large)."""

from __future__ import annotations

import base64
import binascii
import io
import math

import cv2
import numpy as np
from PIL import Image

from edged.api.chat import ApiError, Limits, bad

FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
TILE = 1344  # a grid of several images is at most this wide and high (twice the model's 672 px tile)


def too_large(message: str) -> ApiError:
    return ApiError(413, message, "too_large")


def decode_base64(data: str, where: str, limits: Limits) -> bytes:
    """Base64 text -> bytes, refusing what would decode to more than the image limit before decoding."""
    if len(data) > limits.max_image_bytes * 4 // 3 + 8:  # checked on the text: nothing is allocated for it
        raise too_large(f"{where}: the image is over {limits.max_image_bytes / 2**20:g} MB (api.max_image_mb)")
    if any(ws in data for ws in (" ", "\n", "\r", "\t")):  # MIME-style line breaks: allowed, then dropped
        data = "".join(data.split())
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise bad(f"{where}: the image is not valid base64") from None
    if len(raw) > limits.max_image_bytes:
        raise too_large(f"{where}: the image is {len(raw) / 2**20:.1f} MB; the limit is "
                        f"{limits.max_image_bytes / 2**20:g} MB (api.max_image_mb)")
    if not raw:
        raise bad(f"{where}: the image is empty")
    return raw


def decode_image(raw: bytes, where: str, limits: Limits) -> np.ndarray:
    """Image file bytes -> BGR uint8 HxWx3 (a GIF's first frame). The header's size is checked before the
    pixels are decompressed, so a small file that would unpack to gigabytes is refused cheaply."""
    try:
        with Image.open(io.BytesIO(raw), formats=FORMATS) as im:
            width, height = im.size
            if width * height > limits.max_pixels:
                raise too_large(f"{where}: the image is {width}x{height} pixels; the limit is "
                                f"{limits.max_pixels / 1e6:g} megapixels")
            rgb = np.asarray(im.convert("RGB"))
    except ApiError:
        raise
    except Image.DecompressionBombError:
        raise too_large(f"{where}: the image has too many pixels (over {limits.max_pixels / 1e6:g} "
                        "megapixels)") from None
    except Exception:  # Pillow raises many kinds (OSError, SyntaxError, struct.error...) on hostile bytes
        raise bad(f"{where}: not an image edged can read ({', '.join(FORMATS)})") from None
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise bad(f"{where}: the image has no pixels")
    return np.ascontiguousarray(rgb[:, :, ::-1])


def tile(images: list[np.ndarray]) -> np.ndarray:
    """One image as it is; several in a grid (row by row, in order), each scaled to fit its cell."""
    if len(images) == 1:
        return images[0]
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    cell = TILE // cols
    canvas = np.zeros((rows * cell, cols * cell, 3), np.uint8)
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        scale = min(cell / w, cell / h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        top, left = (i // cols) * cell + (cell - size[1]) // 2, (i % cols) * cell + (cell - size[0]) // 2
        canvas[top:top + size[1], left:left + size[0]] = small
    return canvas
