"""Quantized variants: their weights are the fp32 weights on the recipe's grid, and their kernels compute
what those weights say. Both checks hold on any CPU and fail on a broken quantizer.

A quantized run's tokens do not travel between CPUs. The int4 kernel quantizes activations to int8 in
blocks on x86, per row on Arm (KleidiAI), and not at all where the CPU has no int8 dot product. The
int8 encoder rounds activations to 8 bits, so a last-bit difference in its fp32 parts can move an
activation by a whole step. On this random-weight model either effect moves logits by up to ~3 (int4:
1.5-3.1 between AVX-512 and emulated Cortex-A72/A76, whose tokens part from the golden's). Most
gaps between the top two tokens are smaller than that, so the quantized goldens' tokens describe the
machine that recorded them and are not compared here. What is compared:
- each quantized weight is its fp32 weight rounded to the nearest point of the recipe's grid (numpy on
  the stored bytes: exact everywhere);
- each quantized graph computes its own weights: its outputs stay within a few percent of the twin's
  (the fp32 graphs carrying the quantized weights, run in fp32: CPU-independent to fp32 rounding). The
  gap is activation rounding: about 1% per matmul, summed over the tower.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from edged.export.goldens import forced_logits
from edged.export.quantize import QuantizeOptions
from edged.inference.images import load_image
from edged.inference.preprocess import pixel_values
from tests import glm_quant as q
from tests.glm_fixture import BUNDLE, captioner, goldens

GOLDEN = goldens()
# Bounds on relative error (||got - want|| / ||want||). Measured: 0.02-0.05 for the encoder against its
# twin and 0.04-0.06 against fp32; 0.03-0.09 for int4 logits against the twin. The bounds allow about
# twice that. int16 saturation on AVX2 (8-bit weights) put the encoder 0.33 away from fp32; a wrong scale
# or a swapped weight is off by a whole weight's worth.
ENCODER_VS_TWIN = 0.1
ENCODER_VS_FP32 = 0.15
INT4_LOGITS_VS_TWIN = 0.2


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return q.twin_bundle(BUNDLE, tmp_path_factory.mktemp("twin") / "bundle")


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


@pytest.mark.parametrize(
    ("name", "op"),
    [("decoder_model_merged.int4.onnx", b"MatMulNBits"), ("vision_encoder.int8.onnx", b"MatMulInteger")],
)
def test_quantized_graphs_use_the_quantized_ops(name: str, op: bytes) -> None:
    """The int4 decoder runs MatMulNBits and the int8 encoder MatMulInteger; fp32 graphs have neither."""
    assert op in (BUNDLE / name).read_bytes()
    assert op not in (BUNDLE / name.replace(".int4", "").replace(".int8", "")).read_bytes()


def test_int4_weights_are_the_fp32_weights_on_a_block_grid() -> None:
    """Every decoder MatMul is 4-bit: codes in [-8, 7], one scale (absmax / 8) per block of 64 down K,
    each code the nearest grid point to its fp32 weight."""
    block = QuantizeOptions().block_size
    int4 = onnx.load(BUNDLE / q.DECODER_INT4)
    blocks = {a.i for n in int4.graph.node if n.op_type == "MatMulNBits" for a in n.attribute if a.name == "block_size"}
    assert blocks == {block}
    fp32 = q.matmul_weights(onnx.load(BUNDLE / q.DECODER))
    assert len(fp32) == 9  # qkv, o, gate_up, down in two layers, and the lm head
    assert q.grid_problems(fp32, q.int4_grids(int4), q.int4_block_scale(block)) == []


def test_int8_encoder_weights_are_the_fp32_weights_on_a_channel_grid() -> None:
    """Every encoder MatMul is 7-bit per output channel (scale absmax / 64, zero point 0), each code the
    nearest grid point to its fp32 weight."""
    fp32 = q.matmul_weights(onnx.load(BUNDLE / q.VISION))
    assert len(fp32) == 16  # q, k, v, out, fc1, fc2 in two layers and the adapter's four
    grids = q.int8_grids(onnx.load(BUNDLE / q.VISION_INT8))
    assert q.grid_problems(fp32, grids, q.int8_channel_scale) == []
    assert max(int(np.abs(g.codes).max()) for g in grids.values()) == q.INT8_LIMIT


@pytest.mark.parametrize("name", GOLDEN["images"])
def test_int8_encoder_computes_its_weights(twin: Path, name: str) -> None:
    """The int8 encoder's rows are within activation rounding of its twin's, and within the whole int8
    budget of the fp32 encoder's."""
    image = load_image(BUNDLE / name)
    int8, fp32, exact = captioner(variant="int8-vision"), captioner(), captioner(path=twin)
    px = pixel_values(image, fp32.manifest.preprocessing)
    rows = int8.image_rows(px)
    assert q.relative_error(rows, exact.image_rows(px)) < ENCODER_VS_TWIN
    assert q.relative_error(rows, fp32.image_rows(px)) < ENCODER_VS_FP32
    assert not np.array_equal(rows, fp32.image_rows(px))


@pytest.mark.parametrize("name", GOLDEN["images"])
def test_int4_decoder_computes_its_weights(twin: Path, name: str) -> None:
    """Fed the same image rows and the same tokens, the int4 decoder's logits stay within activation
    rounding of the twin's."""
    int4, exact = captioner(variant="int4"), captioner(path=twin)
    rows = int4.image_rows(pixel_values(load_image(BUNDLE / name), int4.manifest.preprocessing))
    tokens = GOLDEN["variants"]["int4"][name]["tokens"]
    got = forced_logits(int4, rows, GOLDEN["prompt"], tokens)
    want = forced_logits(exact, rows, GOLDEN["prompt"], tokens)
    assert q.relative_error(got, want) < INT4_LOGITS_VS_TWIN


def test_goldens_record_tokens_and_margins_for_every_variant() -> None:
    """Each variant's golden for each image has its tokens, a margin per token, and ends at a stop id
    or at the token budget."""
    assert set(GOLDEN["variants"]) == {"fp32", "int8-vision", "int4"}
    stops = set(captioner().manifest.generation.stop_ids)
    for variant, per_image in GOLDEN["variants"].items():
        assert set(per_image) == set(GOLDEN["images"]), variant
        for name, golden in per_image.items():
            tokens, margins = golden["tokens"], golden["margins"]
            assert len(margins) == len(tokens) > 0, (variant, name)
            assert min(margins) >= 0, (variant, name)
            assert tokens[-1] in stops or len(tokens) == GOLDEN["max_new_tokens"], (variant, name)
