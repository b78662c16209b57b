"""Golden outputs recorded at export: test images, their pixels' hash, and greedy tokens per variant.

The images are drawn here (deterministic, PNG, lossless) in three shapes that exercise the fit and pad
rules: a wide camera frame, a tall one and one smaller than the tile (upscaled).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from edged.config.schema import CaptionerConfig
from edged.inference.images import load_image
from edged.inference.manifest import Manifest
from edged.inference.preprocess import pixel_values

GOLDEN_DIR = "golden"


class ExportCheckFailed(RuntimeError):
    """The exported bundle does not match the reference."""


def draw(width: int, height: int, seed: int) -> np.ndarray:
    """A BGR test frame: gradients, a few solid boxes and some noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack(
        [
            x * 255 // max(width - 1, 1),
            y * 255 // max(height - 1, 1),
            (x + y) * 127 // max(width + height - 2, 1),
        ],
        axis=2,
    ).astype(np.uint8)
    for _ in range(3):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        img[y0 : y0 + height // 4 + 1, x0 : x0 + width // 4 + 1] = rng.integers(0, 256, 3)
    noise = rng.integers(-8, 9, img.shape)
    out: np.ndarray = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return out


def golden_images(out: Path, size: int) -> list[str]:
    """Write the test images under `out/golden/`; returns their bundle-relative names."""
    import cv2

    (out / GOLDEN_DIR).mkdir(exist_ok=True)
    shapes = {
        "wide.png": (round(size * 1.905), round(size * 1.071)),
        "tall.png": (size // 2 + 3, size + 17),
        "small.png": (max(size // 3, 2), max(size // 4, 2)),
    }
    names = []
    for i, (name, (w, h)) in enumerate(shapes.items()):
        cv2.imwrite(str(out / GOLDEN_DIR / name), draw(w, h, seed=i))
        names.append(f"{GOLDEN_DIR}/{name}")
    return names


def captioner_for(out: Path, variant: str, max_new_tokens: int) -> Any:
    from edged.inference.glm_edge_v import GlmEdgeVCaptioner

    cfg = CaptionerConfig(
        path=out,
        variant=variant,
        threads=1,
        repetition_penalty=1.0,
        max_new_tokens=max_new_tokens,
        optimized_cache=False,
    )
    return GlmEdgeVCaptioner(cfg, warmup=False)


def run_variant(out: Path, manifest: Manifest, variant: str, images: list[str], n: int) -> dict[str, Any]:
    """Greedy tokens and image-row statistics for each golden image."""
    cap = captioner_for(out, variant, n)
    result: dict[str, Any] = {}
    for name in images:
        image = load_image(out / name)
        rows = cap.image_rows(pixel_values(image, manifest.preprocessing))
        res = cap.caption(image, manifest.prompt.default_prompt, max_new_tokens=n)
        result[name] = {
            "tokens": list(res.tokens),
            "text": res.text,
            "image_rows": {
                "mean": float(rows.mean()),
                "std": float(rows.std()),
                "absmax": float(np.abs(rows).max()),
            },
        }
    cap.close()
    return result


def record_goldens(
    out: Path,
    manifest: Manifest,
    variants: list[str],
    n: int,
    *,
    images: int = 3,
    reference: Any = None,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Goldens for `variants` (merged into `previous`); with `reference`, check parity and fail loudly."""
    goldens = dict(previous or {})
    names = goldens.get("images") or golden_images(out, manifest.vision.image_size)[:images]
    goldens |= {
        "images": names,
        "prompt": manifest.prompt.default_prompt,
        "max_new_tokens": n,
        "repetition_penalty": 1.0,
        "threads": 1,
    }
    goldens["pixel_sha256"] = {
        name: hashlib.sha256(
            pixel_values(load_image(out / name), manifest.preprocessing).tobytes()
        ).hexdigest()
        for name in names
    }
    per_variant = dict(goldens.get("variants", {}))
    for v in variants:
        per_variant[v] = run_variant(out, manifest, v, names, n)
    goldens["variants"] = per_variant
    if reference is not None:
        goldens["reference"] = check_reference(out, reference, names, n)
    return goldens


def check_reference(out: Path, reference: Any, images: list[str], n: int) -> dict[str, Any]:
    from edged.export.parity import compare, failures
    from edged.export.reference import Reference

    config, weights = reference
    ref = Reference(config)
    ref.load(weights)
    cap = captioner_for(out, "fp32", n)
    report: dict[str, Any] = {}
    for name in images:
        stages = compare(cap, ref, weights.snapshot, load_image(out / name), n)
        bad = failures(stages)
        if bad:
            raise ExportCheckFailed(f"{name}: bundle differs from the torch reference: {'; '.join(bad)}")
        report[name] = {k: v for k, v in stages.items() if k not in ("tokens", "reference_tokens")}
    cap.close()
    return report
