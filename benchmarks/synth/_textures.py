"""Procedural textures for synthetic scenes: fractal noise, bricks, grass, foliage, sky.

All functions return float32 arrays in 0..1 and draw from the `np.random.Generator` they are given,
so a scene is reproducible from its seed.
"""

from __future__ import annotations

import cv2
import numpy as np


def fractal_noise(rng: np.random.Generator, height: int, width: int, base: int = 4, octaves: int = 5,
                  persistence: float = 0.55) -> np.ndarray:
    """Multi-octave value noise (0..1): coarse blobs plus finer and finer detail."""
    out = np.zeros((height, width), np.float32)
    amplitude, total = 1.0, 0.0
    for octave in range(octaves):
        cells = base * 2 ** octave
        grid = rng.random((max(2, cells * height // width + 1), cells + 1)).astype(np.float32)
        out += amplitude * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        total += amplitude
        amplitude *= persistence
    out /= total
    return np.asarray(np.clip((out - out.mean()) * 2.2 + 0.5, 0, 1), np.float32)


def tint(grey: np.ndarray, bgr: tuple[float, float, float], contrast: float = 0.5) -> np.ndarray:
    """Colour a grey texture: `bgr` at mid-grey, varying by `contrast` around it."""
    shade = 1.0 + contrast * (grey - 0.5)
    return np.clip(shade[..., None] * np.asarray(bgr, np.float32), 0, 1)


def bricks(rng: np.random.Generator, height: int, width: int, brick_h: int) -> np.ndarray:
    """A brick wall: per-brick colour variation, mortar lines, fine grain."""
    brick_w = brick_h * 2 + 2
    out = np.empty((height, width, 3), np.float32)
    grain = fractal_noise(rng, height, width, base=16, octaves=3)
    mortar = np.asarray((0.62, 0.66, 0.68), np.float32)
    rows = height // brick_h + 1
    for r in range(rows):
        y0, y1 = r * brick_h, min(height, (r + 1) * brick_h)
        offset = (brick_w // 2) * (r % 2)
        for x0 in range(-offset, width, brick_w):
            colour = np.asarray((0.22, 0.30, 0.55), np.float32) * rng.uniform(0.75, 1.2)
            xs, xe = max(0, x0), min(width, x0 + brick_w)
            out[y0:y1, xs:xe] = colour
        out[y0:min(height, y0 + max(1, brick_h // 6))] = mortar
        for x0 in range(-offset, width, brick_w):
            xs = max(0, x0)
            out[y0:y1, xs:min(width, xs + max(1, brick_h // 6))] = mortar
    return np.clip(out * (0.8 + 0.4 * grain[..., None]), 0, 1)


def grass(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Lawn: green with blade-like vertical streaks and darker patches."""
    patches = fractal_noise(rng, height, width, base=3, octaves=4)
    blades = cv2.blur(rng.random((height, width)).astype(np.float32), (1, 5))
    grey = 0.55 * patches + 0.45 * blades
    return tint(grey, (0.16, 0.42, 0.26), contrast=0.9)


def asphalt(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Road or path surface: grey with speckle."""
    speckle = rng.random((height, width)).astype(np.float32)
    grey = 0.7 * fractal_noise(rng, height, width, base=6, octaves=4) + 0.3 * speckle
    return tint(grey, (0.36, 0.36, 0.38), contrast=0.6)


def foliage(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Leaves: (colour, alpha). Dense clumps with gaps the sky shows through."""
    clumps = fractal_noise(rng, height, width, base=3, octaves=3)
    leaves = fractal_noise(rng, height, width, base=max(8, width // 6), octaves=2)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    crown = 1.0 - ((xx - width / 2) / (width / 2)) ** 2 - ((yy - height / 2) / (height / 2)) ** 2
    alpha = np.clip((0.55 * clumps + 0.45 * leaves + crown * 0.9 - 0.75) * 5.0, 0, 1)
    colour = tint(0.5 * leaves + 0.5 * clumps, (0.12, 0.38, 0.18), contrast=1.2)
    return colour, alpha.astype(np.float32)


def sky(height: int, width: int) -> np.ndarray:
    """A pale gradient sky, brighter towards the horizon."""
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    top = np.asarray((0.85, 0.62, 0.45), np.float32)
    bottom = np.asarray((0.92, 0.86, 0.80), np.float32)
    out = np.empty((height, width, 3), np.float32)
    out[:] = top + (bottom - top) * ramp[..., None]
    return out
