"""Tokenizer and prompt assets: render the snapshot's real chat template once, store token ids.

The template is rendered with a sentinel in place of the user's text; the text before the sentinel
holds the image slot (a run of `<|begin_of_image|>`), the text after it is the suffix. The device
then needs the tokenizer only for the user's own words and for decoding.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from edged.export.source_config import ConfigMismatch
from edged.inference.manifest import Preprocessing, PromptSpec

SENTINEL = "\u2063EDGED_PROMPT\u2063"
DEFAULT_PROMPT = "Describe what is happening in one sentence."


def chat_template(snapshot: Path) -> str:
    """The chat template from tokenizer_config.json, chat_template.jinja or chat_template.json."""
    jinja = snapshot / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    for name in ("chat_template.json", "tokenizer_config.json"):
        path = snapshot / name
        if path.is_file():
            value = json.loads(path.read_text(encoding="utf-8")).get("chat_template")
            if isinstance(value, list):  # named templates
                value = next((t["template"] for t in value if t.get("name") == "default"), None)
            if isinstance(value, str):
                return value
    raise ConfigMismatch(
        f"{snapshot} has no chat template (tokenizer_config.json, chat_template.json/.jinja)"
    )


def render(template: str, text: str) -> str:
    """The template rendered for one user turn holding an image and `text`, ready for the answer."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ConfigMismatch(f"chat template: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    return str(env.from_string(template).render(messages=messages, add_generation_prompt=True))


def prompt_spec(
    snapshot: Path,
    tokenizer: Any,
    image_token_id: int,
    num_image_tokens: int,
    default_prompt: str = DEFAULT_PROMPT,
) -> PromptSpec:
    """Split the rendered template around the image slot and the user's text."""
    template = chat_template(snapshot)
    before, sep, after = render(template, SENTINEL).partition(SENTINEL)
    if not sep:
        raise ConfigMismatch("chat template dropped the user's text")

    def encode(s: str) -> list[int]:
        return list(tokenizer.encode(s, add_special_tokens=False).ids)

    head = encode(before)
    if image_token_id not in head:
        raise ConfigMismatch("rendered chat template has no image tokens before the user's text")
    first = head.index(image_token_id)
    run = first
    while run < len(head) and head[run] == image_token_id:
        run += 1
    if run - first != num_image_tokens or image_token_id in head[run:]:
        raise ConfigMismatch(
            f"chat template renders {head.count(image_token_id)} image tokens; the vision "
            f"encoder makes {num_image_tokens} rows"
        )
    prefix, between, suffix = head[:first], head[run:], encode(after)
    full = encode(render(template, default_prompt))
    joined = prefix + [image_token_id] * num_image_tokens + between + encode(default_prompt) + suffix
    return PromptSpec(
        prefix_ids=tuple(prefix),
        between_ids=tuple(between),
        suffix_ids=tuple(suffix),
        default_prompt=default_prompt,
        default_prompt_ids=tuple(full),
        split_exact=full == joined,
        template_sha256=hashlib.sha256(template.encode()).hexdigest(),
    )


def preprocessing(snapshot: Path, image_size: int) -> Preprocessing:
    """Read preprocessor_config.json and check it is the single-tile Mllama recipe the runtime implements."""
    path = snapshot / "preprocessor_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    kind = cfg.get("image_processor_type", "")
    checks = [
        (
            kind.startswith("MllamaImageProcessor"),
            f"image_processor_type {kind!r} is not MllamaImageProcessor",
        ),
        (int(cfg.get("max_image_tiles", 1)) == 1, "max_image_tiles must be 1"),
        (int(cfg.get("resample", 3)) == 3, "resample must be 3 (bicubic)"),
        (
            cfg.get("do_pad", True) and cfg.get("do_rescale", True) and cfg.get("do_normalize", True),
            "pad, rescale and normalize must all be on",
        ),
    ]
    size = cfg.get("size", {})
    checks.append(
        (
            int(size.get("height", image_size)) == int(size.get("width", image_size)) == image_size,
            f"size {size} differs from the vision tower's image_size {image_size}",
        )
    )
    for ok, message in checks:
        if not ok:
            raise ConfigMismatch(f"{path}: {message}")
    return Preprocessing(
        size=image_size,
        rescale_factor=float(cfg.get("rescale_factor", 1 / 255)),
        mean=tuple(cfg.get("image_mean", (0.5,) * 3)),
        std=tuple(cfg.get("image_std", (0.5,) * 3)),
    )


def special_ids(tokenizer: Any) -> dict[str, int]:
    """Ids of the GLM special tokens present in the tokenizer, by name."""
    names = {
        "endoftext": "<|endoftext|>",
        "user": "<|user|>",
        "assistant": "<|assistant|>",
        "observation": "<|observation|>",
        "system": "<|system|>",
        "begin_of_image": "<|begin_of_image|>",
        "end_of_image": "<|end_of_image|>",
    }
    out = {}
    for key, tok in names.items():
        tid = tokenizer.token_to_id(tok)
        if tid is not None:
            out[key] = int(tid)
    return out
