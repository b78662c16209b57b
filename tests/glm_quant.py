"""Reading the quantized graphs back into fp32 weights, checking them against the fp32 graphs, and
building the "twin": the fp32 graphs with the quantized weights put back in.

Everything here is plain numpy on the stored bytes, so it gives the same answer on every CPU. The twin
is what a quantized graph means mathematically (its weights, fp32 activations); how far a quantized
kernel strays from it is the one part of a quantized run that depends on the CPU.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edged.inference.manifest import MANIFEST, load_manifest, manifest_to_dict, sha256_file

VISION, DECODER = "vision_encoder.onnx", "decoder_model_merged.onnx"
VISION_INT8, DECODER_INT4 = "vision_encoder.int8.onnx", "decoder_model_merged.int4.onnx"
INT8_LIMIT = 64  # 7-bit weights: codes in [-64, 64], scale = absmax / 64 per output channel
TIE = 1e-4  # in grid steps: a weight this close to half-way may round either way (kernels use 1/scale)
Recipe = Callable[[np.ndarray], np.ndarray]  # fp32 weight [K, N] -> the scale each code should have


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def matmul_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The fp32 graph's MatMul weights (constant right-hand sides) by name."""
    init = initializers(model)
    return {n.input[1]: init[n.input[1]] for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in init}


@dataclasses.dataclass(frozen=True)
class Grid:
    """One quantized weight: integer codes [K, N], the scale of each code, and the layout it came from."""

    codes: np.ndarray  # int32 [K, N], already centred (zero point removed)
    scales: np.ndarray  # float32 [K, N]: the scale that applies to each code
    lowest: int
    highest: int

    def weights(self) -> np.ndarray:
        out: np.ndarray = (self.codes * self.scales).astype(np.float32)
        return out


def int4_grids(model: onnx.ModelProto) -> dict[str, Grid]:
    """MatMulNBits weights by the fp32 name they replace (the contrib op's documented layout).

    B is uint8 [N, blocks, block_size / 2], two codes a byte, low nibble first, running down K;
    scales are [N * blocks]; with no zero-point input the zero point is 8 (symmetric).
    """
    init = initializers(model)
    out = {}
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        a = _attrs(node)
        k, n, block = int(a["K"]), int(a["N"]), int(a["block_size"])  # type: ignore[call-overload]
        assert a["bits"] == 4 and len(node.input) == 3, f"{node.name}: not 4-bit symmetric"
        packed, scales = init[node.input[1]], init[node.input[2]]
        codes = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(n, -1).astype(np.int32) - 8
        per_code = np.repeat(scales.reshape(n, -1), block, axis=1)
        name = node.input[1].removesuffix("_Q4")
        out[name] = Grid(codes[:, :k].T, per_code[:, :k].T.astype(np.float32), -8, 7)
    return out


def int8_grids(model: onnx.ModelProto) -> dict[str, Grid]:
    """MatMulInteger weights (int8 [K, N], per-channel scale and zero point) by fp32 name."""
    init = initializers(model)
    out = {}
    for node in model.graph.node:
        if node.op_type != "MatMulInteger" or node.input[1] not in init:
            continue
        name = node.input[1].removesuffix("_quantized")
        q, scale, zero = init[node.input[1]], init[f"{name}_scale"], init[f"{name}_zero_point"]
        codes = q.astype(np.int32) - zero.astype(np.int32)
        out[name] = Grid(codes, np.broadcast_to(scale, q.shape).astype(np.float32), -INT8_LIMIT, INT8_LIMIT)
    return out


def grid_problems(fp32: dict[str, np.ndarray], grids: dict[str, Grid], recipe: Recipe) -> list[str]:
    """Where a quantized weight is not its fp32 weight rounded to the nearest point of its grid, or the
    grid is not the recipe's (absmax / 8 per block, absmax / 64 per channel). Exact ties and near-ties
    may round either way."""
    problems = []
    if set(grids) != set(fp32):
        problems.append(f"quantized {sorted(grids)} != fp32 MatMul weights {sorted(fp32)}")
    for name in sorted(set(grids) & set(fp32)):
        w, g = fp32[name], grids[name]
        if w.shape != g.codes.shape:
            problems.append(f"{name}: shape {g.codes.shape} != {w.shape}")
            continue
        want = recipe(w)
        if not np.allclose(np.abs(g.scales), want, rtol=1e-6, atol=0):
            problems.append(f"{name}: scales are not the recipe's (worst ratio {np.max(np.abs(g.scales) / want):.4g})")
            continue
        x = w / g.scales
        low = np.clip(np.ceil(x - 0.5 - TIE), g.lowest, g.highest)
        high = np.clip(np.floor(x + 0.5 + TIE), g.lowest, g.highest)
        bad = (g.codes < low) | (g.codes > high)
        if bad.any():
            problems.append(f"{name}: {int(bad.sum())} of {bad.size} codes are not the nearest grid point")
    return problems


def int4_block_scale(block: int) -> Recipe:
    """The 4-bit recipe: each block of `block` weights down K has scale = its absmax / 8."""

    def scale(w: np.ndarray) -> np.ndarray:
        k, n = w.shape
        pad = -k % block
        blocks = np.abs(np.pad(w, ((0, pad), (0, 0)))).reshape(-1, block, n).max(axis=1) / 8
        out: np.ndarray = np.repeat(blocks, block, axis=0)[:k]
        return out

    return scale


def int8_channel_scale(w: np.ndarray) -> np.ndarray:
    """The 7-bit recipe: each output channel has scale = its absmax / 64."""
    out: np.ndarray = np.broadcast_to(np.abs(w).max(axis=0) / INT8_LIMIT, w.shape)
    return out


def twin_bundle(src: Path, out: Path) -> Path:
    """A copy of bundle `src` whose fp32 graphs carry the quantized graphs' weights (read back to fp32).

    Its `fp32` variant is then the int8 vision encoder and the int4 decoder computed in fp32: what
    those graphs would give with exact activations, the same on every CPU up to fp32 rounding.
    """
    shutil.copytree(src, out, ignore=shutil.ignore_patterns(".ort-cache"))
    m = load_manifest(out)
    files = dict(m.files)
    for fp32_name, quantized, read in ((VISION, VISION_INT8, int8_grids), (DECODER, DECODER_INT4, int4_grids)):
        grids = read(onnx.load(src / quantized))
        model = onnx.load(src / fp32_name)
        for tensor in model.graph.initializer:
            if tensor.name in grids:
                tensor.CopyFrom(numpy_helper.from_array(grids[tensor.name].weights(), tensor.name))
        onnx.save(model, out / fp32_name)
        entry = files[fp32_name]
        files[fp32_name] = dataclasses.replace(
            entry, sha256=sha256_file(out / fp32_name), size=(out / fp32_name).stat().st_size
        )
    manifest = dataclasses.replace(m, files=files)
    (out / MANIFEST).write_text(json.dumps(manifest_to_dict(manifest), indent=1), encoding="utf-8")
    return out


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """||got - want|| / ||want|| over the whole array."""
    return float(np.linalg.norm((got - want).ravel()) / np.linalg.norm(want.ravel()))


def _node_key(node: onnx.NodeProto) -> tuple[object, ...]:
    attrs = tuple(sorted((a.name, str(onnx.helper.get_attribute_value(a))) for a in node.attribute))
    return (node.op_type, node.domain, tuple(node.input), tuple(node.output), attrs)


def graph_differences(
    got: onnx.ModelProto,
    want: onnx.ModelProto,
    *,
    close: dict[str, float] | None = None,
    skip: frozenset[str] = frozenset(),
) -> list[str]:
    """How two graphs differ: nodes, inputs, outputs and initializer names, types and shapes must be the
    same; initializer values bit for bit, except those in `close` (equal within the given absolute
    tolerance: tables computed with libm) and in `skip` (checked elsewhere)."""
    close = close or {}
    out = []
    g, w = got.graph, want.graph
    if [_node_key(n) for n in g.node] != [_node_key(n) for n in w.node]:
        out.append("nodes differ")
    for part in ("input", "output"):
        if [str(v) for v in getattr(g, part)] != [str(v) for v in getattr(w, part)]:
            out.append(f"graph {part}s differ")
    a, b = initializers(got), initializers(want)
    if [(k, v.dtype, v.shape) for k, v in a.items()] != [(k, v.dtype, v.shape) for k, v in b.items()]:
        return [*out, "initializer names, types or shapes differ"]
    for name, value in a.items():
        if name in skip:
            continue
        if name in close:
            if not np.allclose(value, b[name], atol=close[name], rtol=0):
                out.append(f"{name}: off by {np.abs(value - b[name]).max():.3g} (allowed {close[name]:g})")
        elif value.tobytes() != b[name].tobytes():
            out.append(f"{name}: values differ")
    return out
