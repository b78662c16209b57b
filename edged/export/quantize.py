"""`edged models quantize`: int8 vision encoder and 4-bit decoder, added to the bundle as variants.

Vision: dynamic int8 (`quantize_dynamic`, MatMul weights per channel in 7 bits; convolutions and the
attention products stay fp32) - the tower is compute-bound over 2304 patch rows. 7-bit weights because
x86 CPUs without VNNI (AVX2, early AVX-512) multiply uint8 activations by int8 weights with an
instruction that adds pairs of products into a saturating int16: full 8-bit weights overflow it, and
the encoder's output drifts (a third of its norm on the tiny bundle). With 7 bits every CPU computes
the same exact integer sums. Decoder: 4-bit `MatMulNBits`
(symmetric, block 64, accuracy level 4 = int8 activations in the kernel) - decode is bound by reading
the weights, so fewer bytes per weight is what speeds it up. Needs `onnx` and onnxruntime only.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, replace
from pathlib import Path

from edged.export.bundle import DECODER, VISION, _entry, write_manifest
from edged.inference.manifest import FileEntry, Manifest, Variant, load_manifest, verify

VISION_INT8 = "vision_encoder.int8.onnx"
DECODER_INT4 = "decoder_model_merged.int4.onnx"


@dataclass(frozen=True)
class QuantizeOptions:
    """Quantization recipe."""

    block_size: int = 64
    accuracy_level: int = 4
    golden_tokens: int = 16
    vision: bool = True
    decoder: bool = True


def _external(directory: Path, name: str, m: Manifest) -> bool:
    return bool(m.files[name].external_data)


def _clear(directory: Path, name: str) -> None:
    """Remove an earlier output: onnx appends to an existing external-data file instead of replacing it."""
    for path in (directory / name, directory / f"{name}.data"):
        path.unlink(missing_ok=True)


def quantize_vision(directory: Path, m: Manifest) -> dict[str, FileEntry]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ext = _external(directory, VISION, m)
    _clear(directory, VISION_INT8)
    with contextlib.redirect_stdout(io.StringIO()):  # the quantizer prints per-node chatter
        quantize_dynamic(
            str(directory / VISION),
            str(directory / VISION_INT8),
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            reduce_range=True,  # 7-bit weights: no int16 saturation on AVX2 (see above)
            weight_type=QuantType.QInt8,
            use_external_data_format=ext,
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": 1},
        )  # 1: FLOAT
    io_spec = (dict(m.files[VISION].inputs), dict(m.files[VISION].outputs))
    return _entry(
        directory,
        VISION_INT8,
        "vision",
        "int8 dynamic (MatMul weights per channel, 7-bit)",
        io_spec,
        external=VISION_INT8 + ".data" if ext else "",
    )


def quantize_decoder(directory: Path, m: Manifest, opts: QuantizeOptions) -> dict[str, FileEntry]:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    ext = _external(directory, DECODER, m)
    _clear(directory, DECODER_INT4)
    quant = MatMulNBitsQuantizer(
        str(directory / DECODER),
        bits=4,
        block_size=opts.block_size,
        is_symmetric=True,
        accuracy_level=opts.accuracy_level,
    )
    quant.process()
    quant.model.save_model_to_file(str(directory / DECODER_INT4), use_external_data_format=ext)
    del quant
    recipe = f"int4 MatMulNBits (symmetric, block {opts.block_size}, accuracy level {opts.accuracy_level})"
    io_spec = (dict(m.files[DECODER].inputs), dict(m.files[DECODER].outputs))
    return _entry(
        directory, DECODER_INT4, "decoder", recipe, io_spec, external=DECODER_INT4 + ".data" if ext else ""
    )


def quantize_bundle(directory: Path, opts: QuantizeOptions | None = None) -> Manifest:
    """Quantize an fp32 bundle in place; adds the `int8-vision` and `int4` variants (int4 becomes default)."""
    opts = opts or QuantizeOptions()
    directory = Path(directory)
    m = load_manifest(directory)
    verify(directory, m, [VISION, DECODER], hashes=False)
    files = dict(m.files)
    variants = dict(m.variants)
    new: list[str] = []
    if opts.vision:
        files |= quantize_vision(directory, m)
        variants["int8-vision"] = Variant(
            vision=VISION_INT8, decoder=DECODER, description="int8 vision, fp32 decoder"
        )
        new.append("int8-vision")
    if opts.decoder:
        files |= quantize_decoder(directory, m, opts)
        vision = VISION_INT8 if VISION_INT8 in files else VISION
        variants["int4"] = Variant(
            vision=vision,
            decoder=DECODER_INT4,
            description=f"{'int8' if vision == VISION_INT8 else 'fp32'} vision, int4 decoder (for the board)",
        )
        new.append("int4")
    m = replace(
        m, files=files, variants=variants, default_variant="int4" if opts.decoder else m.default_variant
    )
    write_manifest(directory, m)
    from edged.export.goldens import record_goldens

    goldens = record_goldens(
        directory, m, new, int(m.goldens.get("max_new_tokens", opts.golden_tokens)), previous=dict(m.goldens)
    )
    write_manifest(directory, replace(m, goldens=goldens))
    return load_manifest(directory)
