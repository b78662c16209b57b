"""Stage-by-stage comparison of the ONNX bundle (run by edged's runtime) with the torch reference.

Stages: pixels (edged's numpy/PIL preprocessing vs transformers' `MllamaImageProcessorPil`), image rows
(vision graph vs SigLIP + adapter in torch), last-position prefill logits (decoder graph vs
`GlmForCausalLM` on the reference's own embeddings and rows), and greedy tokens (KV-cached runtime vs
full recomputation in torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edged.export.reference import Reference
from edged.inference.glm_edge_v import GlmEdgeVCaptioner
from edged.inference.preprocess import pixel_values, to_rgb
from edged.inference.prompt import splice

# Thresholds from the spec's parity plan.
LIMITS = {
    "pixels_max_abs": 1e-6,
    "image_rows_max_abs": 1e-3,
    "image_rows_cosine": 0.9999,
    "prefill_logits_max_abs": 1e-2,
}


def reference_pixels(snapshot: Path, image_bgr: np.ndarray) -> np.ndarray:
    from PIL import Image
    from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil

    proc = MllamaImageProcessorPil.from_pretrained(str(snapshot))
    pil = Image.fromarray(to_rgb(image_bgr))
    out = proc(images=[[pil]], return_tensors="np")["pixel_values"]  # type: ignore[arg-type]
    size = out.shape[-1]
    return np.asarray(out, np.float32).reshape(-1, 3, size, size)[:1]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def compare(
    captioner: GlmEdgeVCaptioner, ref: Reference, snapshot: Path, image_bgr: np.ndarray, max_new_tokens: int
) -> dict[str, Any]:
    """Differences per stage for one image (the runtime runs greedy, no repetition penalty)."""
    m = captioner.manifest
    px = pixel_values(image_bgr, m.preprocessing)
    px_ref = reference_pixels(snapshot, image_bgr)
    rows, rows_ref = captioner.image_rows(px), ref.image_features(px_ref)
    prompt = captioner.prompt_ids(m.prompt.default_prompt)
    ids = list(prompt.ids)
    embeds_ref = splice(ref.embed(ids), rows_ref, prompt, m.image_token_id)
    logits_ref = ref.logits(embeds_ref)[0, -1]
    cache = captioner.decoder.start(len(ids) + 1)
    logits = captioner.decoder.step(cache, splice(captioner.embed(ids), rows, prompt, m.image_token_id))
    result = captioner.caption(image_bgr, m.prompt.default_prompt, max_new_tokens=max_new_tokens)
    stops = set(m.generation.stop_ids)
    tokens_ref = ref.greedy(ids, rows_ref, (prompt.image_start, prompt.image_length), max_new_tokens, stops)
    return {
        "pixels_max_abs": float(np.abs(px - px_ref).max()),
        "image_rows_max_abs": float(np.abs(rows - rows_ref).max()),
        "image_rows_cosine": _cosine(rows, rows_ref),
        "prefill_logits_max_abs": float(np.abs(logits - logits_ref).max()),
        "prefill_top5_equal": bool((np.argsort(-logits)[:5] == np.argsort(-logits_ref)[:5]).all()),
        "tokens": list(result.tokens),
        "reference_tokens": tokens_ref,
        "tokens_equal": list(result.tokens) == tokens_ref,
    }


def failures(stages: dict[str, Any]) -> list[str]:
    """Which stages broke their limit."""
    out = [
        f"{k} = {stages[k]:.3g} (limit {v:g})"
        for k, v in LIMITS.items()
        if (stages[k] < v if k.endswith("cosine") else stages[k] > v)
    ]
    for flag in ("prefill_top5_equal", "tokens_equal"):
        if not stages[flag]:
            out.append(f"{flag} is false")
    return out
