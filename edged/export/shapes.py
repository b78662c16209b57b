"""Named architecture shapes for random-weight snapshots: tests (`tiny`) and benchmarks (`2b`, `5b`).

`2b` follows the published glm-edge-1.5b-chat language model plus SigLIP-so400m (inferred from file
sizes, see the spec); `5b` is the glm-edge-v-5b config.json. A real export reads config.json instead.
"""

from __future__ import annotations

from typing import Any

# Offsets of the special tokens from <|endoftext|>, as in the GLM-4 family's tokenizer.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "[MASK]",
    "[gMASK]",
    "[sMASK]",
    "<sop>",
    "<eop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
    "<|begin_of_image|>",
    "<|end_of_image|>",
)

_VISION_SO400M = {
    "hidden_size": 1152,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "intermediate_size": 4304,
    "image_size": 672,
    "patch_size": 14,
}

_SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {
        "lm": {
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "intermediate_size": 128,
            "vocab_size": 512,
            "max_position_embeddings": 256,
        },
        "vision": {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "image_size": 56,
            "patch_size": 14,
        },
        "special_base": 500,
    },
    "2b": {
        "lm": {
            "hidden_size": 2048,
            "num_hidden_layers": 28,
            "num_attention_heads": 16,
            "num_key_value_heads": 4,
            "head_dim": 128,
            "intermediate_size": 6144,
            "vocab_size": 59264,
            "max_position_embeddings": 8192,
        },
        "vision": _VISION_SO400M,
        "special_base": 59246,
    },
    "5b": {
        "lm": {
            "hidden_size": 3072,
            "num_hidden_layers": 40,
            "num_attention_heads": 24,
            "num_key_value_heads": 6,
            "head_dim": 128,
            "intermediate_size": 8192,
            "vocab_size": 59264,
            "max_position_embeddings": 4096,
        },
        "vision": _VISION_SO400M,
        "special_base": 59246,
    },
}

SHAPES = tuple(_SHAPES)


def special_ids(base: int) -> dict[str, int]:
    """Token string -> id for the special tokens laid out from `base`."""
    return {tok: base + i for i, tok in enumerate(SPECIAL_TOKENS)}


def hub_config(shape: str) -> dict[str, Any]:
    """A config.json for `shape`, with the keys and values GLM-Edge-V configs carry."""
    if shape not in _SHAPES:
        raise ValueError(f"unknown shape {shape!r} (known: {', '.join(SHAPES)})")
    s = _SHAPES[shape]
    ids = special_ids(s["special_base"])
    eos = [ids["<|endoftext|>"], ids["<|user|>"], ids["<|observation|>"]]
    return {
        "architectures": ["GlmForCausalLM"],
        "model_type": "glm",
        **s["lm"],
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "partial_rotary_factor": 1.0,
        "tie_word_embeddings": False,
        "pad_token_id": ids["<|endoftext|>"],
        "eos_token_id": eos,
        "boi_token_id": ids["<|begin_of_image|>"],
        "eoi_token_id": ids["<|end_of_image|>"],
        "torch_dtype": "bfloat16",
        "vision_config": dict(s["vision"]),
    }
