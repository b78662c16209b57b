"""Read a snapshot's config.json and assert what the exporter and runtime rely on.

Dimensions are never assumed: they come from the file, and anything the graphs cannot express (a
partial rotary, a non-GLM architecture, a grid the adapter cannot halve) stops the export here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edged.inference.manifest import LmArch, VisionArch

# Keys of config.json that belong to the language model (everything else is vision or remote-code glue).
_LM_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "hidden_act",
    "attention_dropout",
    "max_position_embeddings",
    "rms_norm_eps",
    "tie_word_embeddings",
    "rope_theta",
    "partial_rotary_factor",
    "pad_token_id",
    "eos_token_id",
    "bos_token_id",
    "attention_bias",
    "rope_parameters",
)
_VISION_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "image_size",
    "patch_size",
    "num_channels",
    "hidden_act",
    "layer_norm_eps",
    "attention_dropout",
)


class ConfigMismatch(ValueError):
    """The source config is not a GLM-Edge-V this exporter can write."""


@dataclass(frozen=True)
class SourceConfig:
    """The parsed, checked config of a GLM-Edge-V snapshot."""

    raw: dict[str, Any]
    lm: LmArch
    vision: VisionArch
    image_token_id: int
    eos_ids: tuple[int, ...]
    pad_id: int | None

    def glm_kwargs(self) -> dict[str, Any]:
        """Arguments for transformers' `GlmConfig`, taken from the file as written."""
        return {k: self.raw[k] for k in _LM_KEYS if k in self.raw}

    def siglip_kwargs(self) -> dict[str, Any]:
        """Arguments for transformers' `SiglipVisionConfig` (no pooling head: GLM-Edge-V ignores it)."""
        vc = self.raw["vision_config"]
        return {**{k: vc[k] for k in _VISION_KEYS if k in vc}, "vision_use_head": False}


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigMismatch(message)


def _rope(raw: dict[str, Any]) -> tuple[float, float]:
    params = raw.get("rope_parameters") or {}
    theta = float(params.get("rope_theta", raw.get("rope_theta", 10000.0)))
    # transformers' GlmConfig defaults this to 0.5 when absent; GLM-Edge configs write 1.0 explicitly.
    factor = params.get("partial_rotary_factor", raw.get("partial_rotary_factor"))
    if factor is None:
        raise ConfigMismatch(
            "config.json has no partial_rotary_factor (GLM-Edge writes 1.0; "
            "transformers would silently assume 0.5)"
        )
    rope_type = params.get("rope_type", "default")
    _require(rope_type == "default", f"rope_type {rope_type!r} is not supported (only plain RoPE)")
    return theta, float(factor)


def parse_config(raw: dict[str, Any]) -> SourceConfig:
    """Check a config dict and derive the architecture numbers."""
    _require(raw.get("model_type") == "glm", f"model_type is {raw.get('model_type')!r}, expected 'glm'")
    _require(
        "vision_config" in raw, "config.json has no vision_config: this is a text-only GLM, not GLM-Edge-V"
    )
    _require("boi_token_id" in raw, "config.json has no boi_token_id")
    hidden, heads = int(raw["hidden_size"]), int(raw["num_attention_heads"])
    kv = int(raw.get("num_key_value_heads") or heads)
    head_dim = int(raw.get("head_dim") or hidden // heads)
    _require(heads % kv == 0, f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}")
    theta, factor = _rope(raw)
    _require(
        factor == 1.0,
        f"partial_rotary_factor {factor} is not supported: GLM-Edge rotates all "
        "head dimensions (1.0); the fused rotary of the decoder graph has no partial mode",
    )
    _require(raw.get("hidden_act", "silu") == "silu", f"hidden_act {raw.get('hidden_act')!r} is not silu")
    lm = LmArch(
        hidden_size=hidden,
        num_layers=int(raw["num_hidden_layers"]),
        num_heads=heads,
        num_kv_heads=kv,
        head_dim=head_dim,
        intermediate_size=int(raw["intermediate_size"]),
        vocab_size=int(raw["vocab_size"]),
        max_position_embeddings=int(raw.get("max_position_embeddings", 8192)),
        rms_norm_eps=float(raw.get("rms_norm_eps", 1e-5)),
        rope_theta=theta,
        rotary_dim=int(head_dim * factor),
        rotary_interleaved=True,
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        attention_bias=bool(raw.get("attention_bias", True)),
    )
    return SourceConfig(
        raw=raw,
        lm=lm,
        vision=_vision(raw["vision_config"]),
        image_token_id=int(raw["boi_token_id"]),
        eos_ids=_eos(raw),
        pad_id=raw.get("pad_token_id"),
    )


def _vision(vc: dict[str, Any]) -> VisionArch:
    size, patch = int(vc.get("image_size", 224)), int(vc.get("patch_size", 16))
    _require(
        size % (2 * patch) == 0,
        f"vision image_size {size} is not a multiple of 2 x patch_size {patch}: "
        "the adapter's stride-2 convolution needs an even grid",
    )
    act = vc.get("hidden_act", "gelu_pytorch_tanh")
    _require(act == "gelu_pytorch_tanh", f"vision hidden_act {act!r} is not gelu_pytorch_tanh")
    grid = size // patch // 2
    return VisionArch(
        hidden_size=int(vc["hidden_size"]),
        num_layers=int(vc["num_hidden_layers"]),
        num_heads=int(vc["num_attention_heads"]),
        intermediate_size=int(vc["intermediate_size"]),
        image_size=size,
        patch_size=patch,
        layer_norm_eps=float(vc.get("layer_norm_eps", 1e-6)),
        num_image_tokens=grid * grid + 2,
    )


def _eos(raw: dict[str, Any]) -> tuple[int, ...]:
    eos = raw.get("eos_token_id")
    if eos is None:
        return ()
    return tuple(int(e) for e in (eos if isinstance(eos, list) else [eos]))


def read_config(snapshot: Path) -> SourceConfig:
    """Parse `snapshot/config.json`."""
    path = Path(snapshot) / "config.json"
    if not path.is_file():
        raise ConfigMismatch(f"{path} is missing: {snapshot} is not a model snapshot")
    try:
        return parse_config(json.loads(path.read_text(encoding="utf-8")))
    except ConfigMismatch as exc:
        raise ConfigMismatch(f"{path}: {exc}") from None
