"""Read a snapshot's safetensors weights one tensor at a time, as float32 numpy arrays.

Whole checkpoints never sit in memory: graphs are written tensor by tensor, so a 2B export stays
far below the machine's RAM. The key check is strict: a missing or unexpected tensor stops the export.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from edged.inference.manifest import LmArch, VisionArch

LM_PREFIX = "model."
VIT_PREFIX = "model.vision.vit.model.vision_model."
ADAPTER_PREFIX = "model.vision.adapter."
# Tensors in real checkpoints that the model never reads: SigLIP's unused pooling head, saved buffers.
IGNORED = re.compile(r"^model\.vision\.vit\.model\.vision_model\.head\.|\.position_ids$|\.inv_freq$")


class WeightError(ValueError):
    """The checkpoint's tensors do not match the architecture."""


def lm_names(lm: LmArch) -> list[str]:
    """Checkpoint names of the language model's tensors."""
    names = ["model.embed_tokens.weight", "model.norm.weight"]
    for i in range(lm.num_layers):
        p = f"model.layers.{i}."
        names += [
            p + n
            for n in (
                "self_attn.q_proj.weight",
                "self_attn.k_proj.weight",
                "self_attn.v_proj.weight",
                "self_attn.o_proj.weight",
                "mlp.gate_up_proj.weight",
                "mlp.down_proj.weight",
                "input_layernorm.weight",
                "post_attention_layernorm.weight",
            )
        ]
        if lm.attention_bias:
            names += [p + f"self_attn.{x}_proj.bias" for x in "qkv"]
    if not lm.tie_word_embeddings:
        names.append("lm_head.weight")
    return names


def vision_names(v: VisionArch) -> list[str]:
    """Checkpoint names of the SigLIP tower and the adapter."""
    names = [
        VIT_PREFIX + n
        for n in (
            "embeddings.patch_embedding.weight",
            "embeddings.patch_embedding.bias",
            "embeddings.position_embedding.weight",
            "post_layernorm.weight",
            "post_layernorm.bias",
        )
    ]
    for i in range(v.num_layers):
        p = f"{VIT_PREFIX}encoder.layers.{i}."
        for mod in (
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.out_proj",
            "layer_norm1",
            "layer_norm2",
            "mlp.fc1",
            "mlp.fc2",
        ):
            names += [f"{p}{mod}.weight", f"{p}{mod}.bias"]
    names += [
        ADAPTER_PREFIX + n
        for n in (
            "boi",
            "eoi",
            "conv.weight",
            "conv.bias",
            "linear_proj.linear_proj.weight",
            "linear_proj.norm1.weight",
            "linear_proj.norm1.bias",
            "linear_proj.dense_h_to_4h.weight",
            "linear_proj.gate_proj.weight",
            "linear_proj.dense_4h_to_h.weight",
        )
    ]
    return names


def check_keys(found: Iterable[str], expected: Iterable[str]) -> None:
    """Fail on any missing tensor, or any unexpected one that is not deliberately ignored."""
    have, want = set(found), set(expected)
    missing = sorted(want - have)
    unexpected = sorted(k for k in have - want if not IGNORED.search(k))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {', '.join(missing[:5])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {', '.join(unexpected[:5])})")
        raise WeightError("checkpoint does not match config.json: " + "; ".join(parts))


class SnapshotWeights:
    """Lazy access to the tensors of `model.safetensors` or a sharded `*.safetensors.index.json`."""

    def __init__(self, snapshot: Path) -> None:
        from safetensors import safe_open

        self.snapshot = Path(snapshot)
        self._where = self._index()
        self._files: dict[str, Any] = {}
        self._open = safe_open

    def _index(self) -> dict[str, str]:
        index = self.snapshot / "model.safetensors.index.json"
        if index.is_file():
            return dict(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
        single = self.snapshot / "model.safetensors"
        if not single.is_file():
            raise WeightError(
                f"{self.snapshot} has neither model.safetensors nor model.safetensors.index.json"
            )
        from safetensors import safe_open

        with safe_open(str(single), framework="pt") as f:
            return dict.fromkeys(f.keys(), "model.safetensors")

    def names(self) -> list[str]:
        """Every tensor name in the checkpoint."""
        return list(self._where)

    def files(self) -> list[str]:
        """The safetensors files, in name order."""
        return sorted(set(self._where.values()))

    def get(self, name: str) -> np.ndarray:
        """One tensor as float32 (bf16 and fp16 are widened exactly)."""
        import torch

        fname = self._where[name]
        if fname not in self._files:
            self._files[fname] = self._open(str(self.snapshot / fname), framework="pt")
        tensor = self._files[fname].get_tensor(name)
        return np.ascontiguousarray(tensor.to(torch.float32).numpy())

    def close(self) -> None:
        self._files.clear()
