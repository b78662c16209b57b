"""Write `vision_encoder.onnx`: pixels -> SigLIP -> adapter -> [boi, 576 rows, eoi].

Attention is onnxruntime's `MultiHeadAttention`; GELU (tanh) in the tower is `FastGelu`, the adapter's
erf GELU is `Gelu`. Every projection is a plain MatMul, so dynamic int8 quantization reaches all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from onnx import TensorProto

from edged.export.graph import MS_DOMAIN, GraphBuilder, linear_t
from edged.export.weights import ADAPTER_PREFIX, VIT_PREFIX
from edged.inference.manifest import LmArch, VisionArch

GetWeight = Callable[[str], np.ndarray]


def io_spec(v: VisionArch, lm: LmArch) -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        {"pixel_values": [1, 3, v.image_size, v.image_size]},
        {"image_features": [1, v.num_image_tokens, lm.hidden_size]},
    )


class _Vision:
    def __init__(self, g: GraphBuilder, v: VisionArch, get: GetWeight) -> None:
        self.g, self.v, self.get = g, v, get

    def w(self, name: str, transform: Callable[[np.ndarray], np.ndarray] | None = None) -> str:
        array = self.get(name)
        return self.g.weight(name, transform(array) if transform else array)

    def linear(self, x: str, prefix: str, bias: bool = True) -> str:
        y = self.g.op1("MatMul", [x, self.w(prefix + ".weight", linear_t)], name=prefix)
        return self.g.op1("Add", [y, self.w(prefix + ".bias")]) if bias else y

    def layer_norm(self, x: str, prefix: str, eps: float) -> str:
        return self.g.op1(
            "LayerNormalization",
            [x, self.w(prefix + ".weight"), self.w(prefix + ".bias")],
            axis=-1,
            epsilon=eps,
        )

    def embeddings(self) -> str:
        g, p = self.g, VIT_PREFIX + "embeddings."
        patches = g.op1(
            "Conv",
            ["pixel_values", self.w(p + "patch_embedding.weight"), self.w(p + "patch_embedding.bias")],
            kernel_shape=[self.v.patch_size] * 2,
            strides=[self.v.patch_size] * 2,
        )
        grid = self.v.image_size // self.v.patch_size
        rows = g.op1(
            "Transpose",
            [g.op1("Reshape", [patches, g.const([1, self.v.hidden_size, grid * grid])])],
            perm=[0, 2, 1],
        )
        pos = self.get(p + "position_embedding.weight")[None]
        return g.op1("Add", [rows, g.weight(p + "position_embedding.weight", pos)])

    def encoder_layer(self, i: int, x: str) -> str:
        g, v, p = self.g, self.v, f"{VIT_PREFIX}encoder.layers.{i}."
        h = self.layer_norm(x, p + "layer_norm1", v.layer_norm_eps)
        q, k, val = (self.linear(h, p + f"self_attn.{n}_proj") for n in "qkv")
        attn = g.op1(
            "MultiHeadAttention",
            [q, k, val],
            domain=MS_DOMAIN,
            num_heads=v.num_heads,
            name=f"vision.layers.{i}.attn",
        )
        x = g.op1("Add", [x, self.linear(attn, p + "self_attn.out_proj")])
        h = self.layer_norm(x, p + "layer_norm2", v.layer_norm_eps)
        h = g.op1("FastGelu", [self.linear(h, p + "mlp.fc1")], domain=MS_DOMAIN)
        return g.op1("Add", [x, self.linear(h, p + "mlp.fc2")])

    def adapter(self, rows: str, hidden: int, ffn: int) -> str:
        g, v, p = self.g, self.v, ADAPTER_PREFIX
        grid = v.image_size // v.patch_size
        image = g.op1(
            "Reshape", [g.op1("Transpose", [rows], perm=[0, 2, 1]), g.const([1, v.hidden_size, grid, grid])]
        )
        conv = g.op1(
            "Conv",
            [image, self.w(p + "conv.weight"), self.w(p + "conv.bias")],
            kernel_shape=[2, 2],
            strides=[2, 2],
        )
        n = (grid // 2) ** 2
        x = g.op1("Transpose", [g.op1("Reshape", [conv, g.const([1, hidden, n])])], perm=[0, 2, 1])
        x = self.linear(x, p + "linear_proj.linear_proj", bias=False)
        x = g.op1("Gelu", [self.layer_norm(x, p + "linear_proj.norm1", 1e-5)], domain=MS_DOMAIN)
        gate = self.linear(x, p + "linear_proj.gate_proj", bias=False)
        up = self.linear(x, p + "linear_proj.dense_h_to_4h", bias=False)
        act = g.op1("Mul", [g.op1("Mul", [gate, g.op1("Sigmoid", [gate])]), up])
        x = self.linear(act, p + "linear_proj.dense_4h_to_h", bias=False)
        return g.op1("Concat", [self.w(p + "boi"), x, self.w(p + "eoi")], axis=1, outputs=["image_features"])


def build_vision(
    path: Path,
    v: VisionArch,
    lm: LmArch,
    get: GetWeight,
    *,
    external: bool,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the vision graph; returns its input and output specs."""
    g = GraphBuilder(path, "glm_edge_v_vision", external)
    enc = _Vision(g, v, get)
    inputs, outputs = io_spec(v, lm)
    g.add_input("pixel_values", TensorProto.FLOAT, inputs["pixel_values"])
    x = enc.embeddings()
    for i in range(v.num_layers):
        x = enc.encoder_layer(i, x)
        if progress:
            progress(1)
    x = enc.layer_norm(x, VIT_PREFIX + "post_layernorm", v.layer_norm_eps)
    enc.adapter(x, lm.hidden_size, lm.intermediate_size)
    g.add_output("image_features", TensorProto.FLOAT, outputs["image_features"])
    g.save()
    return inputs, outputs
