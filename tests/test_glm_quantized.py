"""Quantized variants run with finite outputs and are deterministic.

Random weights make quantization a worst case (int4 keeps little of the fp32 logits), so their tokens
are checked for determinism and shape only; accuracy is a matter for a real model.
"""

from __future__ import annotations

import numpy as np
import pytest

from edged.inference.images import load_image
from edged.inference.preprocess import pixel_values
from tests.glm_fixture import BUNDLE, captioner, goldens

GOLDEN = goldens()


@pytest.mark.parametrize("variant", ["int8-vision", "int4"])
def test_variant_is_deterministic_and_finite(variant: str) -> None:
    """Two fresh sessions give identical tokens; image rows and logits are finite."""
    image = load_image(BUNDLE / GOLDEN["images"][0])
    a, b = captioner(variant=variant), captioner(variant=variant)
    first = a.caption(image, GOLDEN["prompt"])
    assert first.tokens == b.caption(image, GOLDEN["prompt"]).tokens
    assert len(first.tokens) == GOLDEN["max_new_tokens"] or first.finish_reason == "stop"
    assert all(0 <= t < a.manifest.lm.vocab_size for t in first.tokens)
    rows = a.image_rows(pixel_values(image, a.manifest.preprocessing))
    assert rows.shape == (1, a.manifest.vision.num_image_tokens, a.manifest.lm.hidden_size)
    assert np.isfinite(rows).all()
    p = a.prompt_ids(GOLDEN["prompt"])
    logits = a.decoder.full_logits(a.embed(p.ids))
    assert logits.shape == (a.manifest.lm.vocab_size,)
    assert np.isfinite(logits).all()


def test_int8_vision_stays_close_to_fp32() -> None:
    """Dynamic int8 keeps the image rows' direction (cosine) even on random weights."""
    image = load_image(BUNDLE / GOLDEN["images"][0])
    fp32, int8 = captioner(variant="fp32"), captioner(variant="int8-vision")
    px = pixel_values(image, fp32.manifest.preprocessing)
    a, b = fp32.image_rows(px).ravel(), int8.image_rows(px).ravel()
    assert float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) > 0.9
    assert not np.array_equal(a, b)


@pytest.mark.parametrize(
    ("name", "op"),
    [("decoder_model_merged.int4.onnx", b"MatMulNBits"), ("vision_encoder.int8.onnx", b"MatMulInteger")],
)
def test_quantized_graphs_use_the_quantized_ops(name: str, op: bytes) -> None:
    """The int4 decoder runs MatMulNBits and the int8 encoder MatMulInteger; fp32 graphs have neither."""
    assert op in (BUNDLE / name).read_bytes()
    assert op not in (BUNDLE / name.replace(".int4", "").replace(".int8", "")).read_bytes()


def test_goldens_recorded_for_every_variant() -> None:
    """The manifest's goldens cover each variant, and quantized runs match them on this machine kind."""
    assert set(GOLDEN["variants"]) == {"fp32", "int8-vision", "int4"}
    image = load_image(BUNDLE / GOLDEN["images"][1])
    res = captioner(variant="int4").caption(image, GOLDEN["prompt"])
    assert len(res.tokens) == len(GOLDEN["variants"]["int4"][GOLDEN["images"][1]]["tokens"])
