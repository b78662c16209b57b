"""Write a random-weight snapshot of a named shape, laid out exactly as the hub lays out GLM-Edge-V.

The exporter then reads it like a real one, so tests and benchmarks run the same code path as a real
export. Weights are N(0, std) for tensors of two or more dimensions, norms are 1 (so the tiny model does
not collapse into one repeated token), with a fixed seed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edged.export.shapes import SPECIAL_TOKENS, hub_config, special_ids
from edged.export.source_config import parse_config
from edged.export.weights import lm_names, vision_names

# A GLM-Edge-style chat template written for these snapshots (the real one comes with a real snapshot):
# role tags, no end-of-turn token, the image as a run of <|begin_of_image|> inside the user turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}"
    "{% for _ in range(NUM_IMAGE_TOKENS) %}<|begin_of_image|>{% endfor %}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_WORDS = [
    "a",
    "an",
    "the",
    "and",
    "of",
    "in",
    "on",
    "at",
    "to",
    "with",
    "is",
    "are",
    "was",
    "be",
    "there",
    "someone",
    "somebody",
    "person",
    "people",
    "man",
    "woman",
    "child",
    "dog",
    "cat",
    "car",
    "truck",
    "bicycle",
    "package",
    "box",
    "door",
    "window",
    "gate",
    "garden",
    "yard",
    "street",
    "road",
    "driveway",
    "porch",
    "room",
    "kitchen",
    "light",
    "dark",
    "night",
    "day",
    "standing",
    "walking",
    "running",
    "sitting",
    "holding",
    "carrying",
    "opening",
    "closing",
    "near",
    "front",
    "back",
    "left",
    "right",
    "inside",
    "outside",
    "camera",
    "image",
    "picture",
    "scene",
    "shows",
    "describe",
    "what",
    "happening",
    "one",
    "sentence",
    "nothing",
    "empty",
    "quiet",
    "moving",
    "parked",
    "red",
    "blue",
    "white",
    "black",
    "green",
    "small",
    "large",
    "two",
    "three",
    ".",
    ",",
    "?",
    "Describe",
    "What",
    "Is",
    "A",
    "The",
    "There",
    "Someone",
    # the words of a yes/no answer, so the tiny and 2B-shaped bundles can answer questions as GLM-Edge-V does
    "Yes",
    "No",
    "yes",
    "no",
]


def _tensor_shapes(cfg: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    sc = parse_config(cfg)
    lm, v = sc.lm, sc.vision
    h, hd, kvh = lm.hidden_size, lm.head_dim, lm.num_kv_heads * lm.head_dim
    grid = v.image_size // v.patch_size
    shapes: dict[str, tuple[int, ...]] = {}
    for name in lm_names(lm):
        leaf = name.split(".")[-2] if name.endswith((".weight", ".bias")) else name
        shapes[name] = {
            "embed_tokens": (lm.vocab_size, h),
            "lm_head": (lm.vocab_size, h),
            "q_proj": (lm.num_heads * hd, h),
            "k_proj": (kvh, h),
            "v_proj": (kvh, h),
            "o_proj": (h, lm.num_heads * hd),
            "gate_up_proj": (2 * lm.intermediate_size, h),
            "down_proj": (h, lm.intermediate_size),
        }.get(leaf, (h,))
        if name.endswith(".bias"):
            shapes[name] = (shapes[name][0],)
    vh, vf, ah, af = v.hidden_size, v.intermediate_size, h, lm.intermediate_size
    for name in vision_names(v):
        shapes[name] = _vision_shape(name, vh=vh, vf=vf, ah=ah, af=af, grid=grid, patch=v.patch_size)
    return shapes


def _vision_shape(name: str, *, vh: int, vf: int, ah: int, af: int, grid: int, patch: int) -> tuple[int, ...]:
    table: dict[str, tuple[int, ...]] = {
        "patch_embedding.weight": (vh, 3, patch, patch),
        "position_embedding.weight": (grid * grid, vh),
        "fc1.weight": (vf, vh),
        "fc1.bias": (vf,),
        "fc2.weight": (vh, vf),
        "adapter.boi": (1, 1, ah),
        "adapter.eoi": (1, 1, ah),
        "conv.weight": (ah, vh, 2, 2),
        "conv.bias": (ah,),
        "linear_proj.linear_proj.weight": (ah, ah),
        "linear_proj.norm1.weight": (ah,),
        "linear_proj.norm1.bias": (ah,),
        "dense_h_to_4h.weight": (af, ah),
        "gate_proj.weight": (af, ah),
        "dense_4h_to_h.weight": (ah, af),
    }
    for suffix, shape in table.items():
        if name.endswith(suffix):
            return shape
    if name.endswith("_proj.weight"):
        return (vh, vh)
    return (vh,)


def _random_tensors(cfg: dict[str, Any], seed: int, std: float) -> Iterator[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    for name, shape in _tensor_shapes(cfg).items():
        if "norm" in name:
            yield name, (np.ones if name.endswith(".weight") else np.zeros)(shape, np.float32)
        elif len(shape) >= 2:
            yield name, rng.standard_normal(shape, dtype=np.float32) * std
        else:  # linear and convolution biases
            yield name, rng.standard_normal(shape, dtype=np.float32) * 0.1
    # Real checkpoints also carry SigLIP's pooling head, which the model never uses.
    vh = cfg["vision_config"]["hidden_size"]
    yield "model.vision.vit.model.vision_model.head.probe", rng.standard_normal((1, 1, vh), dtype=np.float32)


def write_weights(out: Path, cfg: dict[str, Any], seed: int, std: float, shard_bytes: int = 1 << 30) -> None:
    """Stream random bf16 tensors into safetensors shards (one file when it fits in `shard_bytes`)."""
    import torch
    from safetensors.torch import save_file

    shards: list[dict[str, Any]] = [{}]
    sizes = [0]
    weight_map: dict[str, int] = {}
    files: list[str] = []

    def flush() -> None:
        idx = len(files)
        files.append(f"part{idx}")
        save_file(shards[-1], str(out / f"part{idx}.tmp"), metadata={"format": "pt"})
        shards[-1] = {}
        sizes[-1] = 0

    for name, array in _random_tensors(cfg, seed, std):
        tensor = torch.from_numpy(array).to(torch.bfloat16)
        if sizes[-1] and sizes[-1] + tensor.numel() * 2 > shard_bytes:
            flush()
        shards[-1][name] = tensor
        sizes[-1] += tensor.numel() * 2
        weight_map[name] = len(files)
    flush()
    _name_shards(out, files, weight_map)


def _name_shards(out: Path, files: list[str], weight_map: dict[str, int]) -> None:
    n = len(files)
    if n == 1:
        (out / "part0.tmp").rename(out / "model.safetensors")
        return
    names = [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    for i, name in enumerate(names):
        (out / f"part{i}.tmp").rename(out / name)
    index = {"metadata": {}, "weight_map": {k: names[v] for k, v in weight_map.items()}}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")


def write_tokenizer(out: Path, cfg: dict[str, Any], num_image_tokens: int) -> None:
    """A WordLevel tokenizer with the real special-token strings at the ids the config declares."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    base = int(cfg["pad_token_id"])
    vocab = {w: i for i, w in enumerate(_WORDS)}
    for i in range(len(vocab), base):
        vocab[f"w{i}"] = i
    vocab["[UNK]"] = vocab.pop(f"w{base - 1}", base - 1)
    for special, i in special_ids(base).items():
        vocab[special] = i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.save(str(out / "tokenizer.json"))
    template = CHAT_TEMPLATE.replace("NUM_IMAGE_TOKENS", str(num_image_tokens))
    tk_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "[UNK]",
        "chat_template": template,
        "model_max_length": cfg["max_position_embeddings"],
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tk_cfg, indent=2), encoding="utf-8")
    tokens_map = {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "[UNK]"}
    (out / "special_tokens_map.json").write_text(json.dumps(tokens_map, indent=2), encoding="utf-8")


def write_random_snapshot(out: Path, shape: str, seed: int = 0, std: float | None = None) -> Path:
    """Write a complete random snapshot of `shape` into `out` and return it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = hub_config(shape)
    sc = parse_config(cfg)
    size = sc.vision.image_size
    (out / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    pre = {
        "image_processor_type": "MllamaImageProcessor",
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_pad": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "max_image_tiles": 1,
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"height": size, "width": size},
    }
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2), encoding="utf-8")
    gen = {"eos_token_id": cfg["eos_token_id"], "pad_token_id": cfg["pad_token_id"], "do_sample": False}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2), encoding="utf-8")
    write_tokenizer(out, cfg, sc.vision.num_image_tokens)
    write_weights(out, cfg, seed, std if std is not None else (0.5 if shape == "tiny" else 0.02))
    return out
