"""Write `decoder_model_merged.onnx` from the language model's weight tensors.

One graph serves prefill and decode. Attention is onnxruntime's `GroupQueryAttention` with the
interleaved rotary fused in and the KV cache in BNSH buffers that the runtime binds as both past and
present (one preallocated buffer per layer, written in place), so a decode step neither copies the
cache nor expands the KV heads. RMSNorms are `SimplifiedLayerNormalization` and, fused with the
residual add, `SkipSimplifiedLayerNormalization`. Only the last position's logits are computed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from onnx import TensorProto

from edged.export.graph import MS_DOMAIN, GraphBuilder, linear_t
from edged.inference.manifest import LmArch

GetWeight = Callable[[str], np.ndarray]
FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64


def rotary_cache(lm: LmArch) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin tables [max_positions, rotary_dim / 2], computed in float32 as transformers does."""
    exponent = np.arange(0, lm.rotary_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(lm.rotary_dim)
    inv_freq = (np.float32(1.0) / (np.float32(lm.rope_theta) ** exponent)).astype(np.float32)
    freqs = np.outer(np.arange(lm.max_position_embeddings, dtype=np.float32), inv_freq).astype(np.float32)
    return np.cos(freqs).astype(np.float32), np.sin(freqs).astype(np.float32)


def io_spec(lm: LmArch) -> tuple[dict[str, Any], dict[str, Any]]:
    """Input and output names with symbolic shapes (recorded in the manifest)."""
    kv = ["batch", lm.num_kv_heads, "past_sequence_length", lm.head_dim]
    pkv = ["batch", lm.num_kv_heads, "present_sequence_length", lm.head_dim]
    inputs: dict[str, Any] = {
        "inputs_embeds": ["batch", "sequence_length", lm.hidden_size],
        "attention_mask": ["batch", "total_sequence_length"],
        "position_ids": ["batch", "sequence_length"],
    }
    outputs: dict[str, Any] = {"logits": ["batch", 1, lm.vocab_size]}
    for i in range(lm.num_layers):
        inputs[f"past_key_values.{i}.key"] = kv
        inputs[f"past_key_values.{i}.value"] = kv
        outputs[f"present.{i}.key"] = pkv
        outputs[f"present.{i}.value"] = pkv
    return inputs, outputs


class _Decoder:
    def __init__(self, g: GraphBuilder, lm: LmArch, get: GetWeight) -> None:
        self.g, self.lm, self.get = g, lm, get

    def matmul(self, x: str, name: str, weight: np.ndarray, bias: np.ndarray | None = None) -> str:
        y = self.g.op1("MatMul", [x, self.g.weight(name, linear_t(weight))], name=name.replace(".weight", ""))
        if bias is not None:
            y = self.g.op1("Add", [y, self.g.weight(name.replace("weight", "bias"), bias)])
        return y

    def skip_norm(self, x: str, residual: str, weight: str) -> tuple[str, str]:
        g = self.g
        out, total = g.fresh("norm_out"), g.fresh("residual")
        g.op(
            "SkipSimplifiedLayerNormalization",
            [x, residual, g.weight(weight, self.get(weight))],
            outputs=[out, "", "", total],
            domain=MS_DOMAIN,
            epsilon=self.lm.rms_norm_eps,
        )
        return out, total

    def attention(self, i: int, h: str, ctx: dict[str, str]) -> str:
        lm, p = self.lm, f"model.layers.{i}.self_attn."
        w = np.concatenate([self.get(p + f"{x}_proj.weight") for x in "qkv"], axis=0)
        bias = np.concatenate([self.get(p + f"{x}_proj.bias") for x in "qkv"]) if lm.attention_bias else None
        qkv = self.matmul(h, p + "qkv_proj.weight", w, bias)
        del w
        attn = self.g.op1(
            "GroupQueryAttention",
            [
                qkv,
                "",
                "",
                f"past_key_values.{i}.key",
                f"past_key_values.{i}.value",
                ctx["seqlens_k"],
                ctx["total"],
                ctx["cos"],
                ctx["sin"],
                "position_ids",
            ],
            outputs=[self.g.fresh("attn"), f"present.{i}.key", f"present.{i}.value"],
            domain=MS_DOMAIN,
            num_heads=lm.num_heads,
            kv_num_heads=lm.num_kv_heads,
            do_rotary=1,
            rotary_interleaved=1,
            scale=float(lm.head_dim**-0.5),
            name=f"layers.{i}.attn",
        )
        return self.matmul(attn, p + "o_proj.weight", self.get(p + "o_proj.weight"))

    def mlp(self, i: int, h: str) -> str:
        g, p, ffn = self.g, f"model.layers.{i}.mlp.", self.lm.intermediate_size
        gate_up = self.matmul(h, p + "gate_up_proj.weight", self.get(p + "gate_up_proj.weight"))
        gate, up = g.op("Split", [gate_up, g.const([ffn, ffn])], n_out=2, axis=-1)
        silu = g.op1("Mul", [gate, g.op1("Sigmoid", [gate])])
        return self.matmul(g.op1("Mul", [silu, up]), p + "down_proj.weight", self.get(p + "down_proj.weight"))

    def context(self) -> dict[str, str]:
        g = self.g
        total_i64 = g.op1("ReduceSum", ["attention_mask", g.const([1])], keepdims=0)
        seqlens = g.op1("Cast", [g.op1("Sub", [total_i64, g.const(1)])], to=TensorProto.INT32)
        width = g.op1("Gather", [g.op1("Shape", ["attention_mask"]), g.const(1)], axis=0)
        cos, sin = rotary_cache(self.lm)
        return {
            "seqlens_k": seqlens,
            "total": g.op1("Cast", [width], to=TensorProto.INT32),
            "cos": g.weight("cos_cache", cos),
            "sin": g.weight("sin_cache", sin),
        }


def build_decoder(
    path: Path, lm: LmArch, get: GetWeight, external: bool, progress: Callable[[int], None] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the decoder graph; returns its input and output specs."""
    g = GraphBuilder(path, "glm_edge_v_decoder", external)
    d = _Decoder(g, lm, get)
    inputs, outputs = io_spec(lm)
    for name, shape in inputs.items():
        g.add_input(name, INT64 if name in ("attention_mask", "position_ids") else FLOAT, shape)
    ctx = d.context()
    x, residual = "inputs_embeds", "inputs_embeds"
    for i in range(lm.num_layers):
        w_in = f"model.layers.{i}.input_layernorm.weight"
        if i == 0:
            h = g.op1(
                "SimplifiedLayerNormalization",
                [x, g.weight(w_in, get(w_in))],
                axis=-1,
                epsilon=lm.rms_norm_eps,
            )
        else:
            h, residual = d.skip_norm(x, residual, w_in)
        h, residual = d.skip_norm(
            d.attention(i, h, ctx), residual, f"model.layers.{i}.post_attention_layernorm.weight"
        )
        x = d.mlp(i, h)
        if progress:
            progress(1)
    last = [
        g.op1("Slice", [v, g.const([-1]), g.const([np.iinfo(np.int64).max]), g.const([1])])
        for v in (x, residual)
    ]
    h, _ = d.skip_norm(last[0], last[1], "model.norm.weight")
    head = get("model.embed_tokens.weight" if lm.tie_word_embeddings else "lm_head.weight")
    g.op("MatMul", [h, g.weight("lm_head.weight", linear_t(head))], outputs=["logits"], name="lm_head")
    del head
    for name, shape in outputs.items():
        g.add_output(name, FLOAT, shape)
    g.save()
    return inputs, outputs
