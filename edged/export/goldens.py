"""Golden outputs recorded at export: test images, their pixels' hash, and greedy tokens per variant.

The images are drawn here (deterministic, PNG, lossless) in three shapes that exercise the fit and pad
rules: a wide camera frame, a tall one and one smaller than the tile (upscaled).

Each variant's greedy tokens come with their margins: at each step, how far the chosen token's logit
stood above the runner-up's. Kernels differ between CPUs (SIMD width changes the summation order;
int8 and int4 kernels quantize activations differently), so a machine reproduces a golden token only
where its margin is wider than twice the difference the variant's arithmetic allows between machines;
the margins say which steps those are.
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
from edged.inference.prompt import splice

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


def forced_logits(cap: Any, rows: np.ndarray, prompt: str, tokens: list[int]) -> np.ndarray:
    """Logits [len(tokens), vocab] before each of `tokens` when the decoder is fed exactly those tokens.

    The same KV-cached steps as a greedy caption, but the context is given rather than chosen, so
    two runs (two variants, two machines) can be compared step by step even after they diverge.
    """
    m = cap.manifest
    p = cap.prompt_ids(prompt)
    cache = cap.decoder.start(len(p.ids) + len(tokens))
    out = [cap.decoder.step(cache, splice(cap.embed(p.ids), rows, p, m.image_token_id))]
    for token in tokens[:-1]:
        out.append(cap.decoder.step(cache, cap.embed([token])))
    return np.stack(out)


def margins(logits: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 logit of each row: how clear each greedy choice was."""
    top2 = np.sort(logits, axis=-1)[..., -2:]
    out: np.ndarray = top2[..., 1] - top2[..., 0]
    return out


def run_variant(out: Path, manifest: Manifest, variant: str, images: list[str], n: int) -> dict[str, Any]:
    """Greedy tokens, their margins and image-row statistics for each golden image."""
    cap = captioner_for(out, variant, n)
    result: dict[str, Any] = {}
    for name in images:
        image = load_image(out / name)
        rows = cap.image_rows(pixel_values(image, manifest.preprocessing))
        res = cap.caption(image, manifest.prompt.default_prompt, max_new_tokens=n)
        tokens = list(res.tokens)
        logits = forced_logits(cap, rows, manifest.prompt.default_prompt, tokens)
        if [int(t) for t in logits.argmax(axis=-1)] != tokens:  # greedy = argmax with penalty 1.0
            raise ExportCheckFailed(f"{variant} {name}: teacher-forced logits do not replay the caption")
        result[name] = {
            "tokens": tokens,
            "margins": [round(float(x), 5) for x in margins(logits)],
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
