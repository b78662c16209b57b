"""Prompt token ids and the splice of image rows into the prompt's embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edged.inference.manifest import Manifest


class SpliceError(ValueError):
    """The image rows do not fit the prompt's image slot."""


@dataclass(frozen=True)
class PromptIds:
    """The whole prompt sequence and where its image slot is."""

    ids: tuple[int, ...]
    image_start: int
    image_length: int


def build_prompt(m: Manifest, tokenizer: Any, prompt: str) -> PromptIds:
    """`prefix + image slot + between + tokens(prompt) + suffix`, exact for the default prompt."""
    p, n = m.prompt, m.vision.num_image_tokens
    start = len(p.prefix_ids)
    if prompt == p.default_prompt:
        ids = tuple(p.default_prompt_ids)
    else:
        text = tuple(tokenizer.encode(prompt, add_special_tokens=False).ids)
        ids = (*p.prefix_ids, *([m.image_token_id] * n), *p.between_ids, *text, *p.suffix_ids)
    return PromptIds(ids=ids, image_start=start, image_length=n)


def splice(embeds: np.ndarray, image_rows: np.ndarray, prompt: PromptIds, image_token_id: int) -> np.ndarray:
    """Overwrite the image slot of `embeds` [1, L, H] with `image_rows` [1, N, H], checking lengths."""
    ids = np.asarray(prompt.ids)
    slot = np.flatnonzero(ids == image_token_id)
    n = image_rows.shape[1]
    if slot.size != n:
        raise SpliceError(f"prompt has {slot.size} image tokens but the vision encoder gave {n} rows")
    if slot.size and (slot[0] != prompt.image_start or slot[-1] - slot[0] + 1 != n):
        raise SpliceError("the prompt's image tokens are not one contiguous run at the expected position")
    if image_rows.shape[2] != embeds.shape[2]:
        raise SpliceError(f"image rows have width {image_rows.shape[2]}, embeddings {embeds.shape[2]}")
    out: np.ndarray = embeds.copy()
    out[0, prompt.image_start : prompt.image_start + n] = image_rows[0]
    return out


def shared_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every sequence shares, leaving each at least one token of its own.

    Each sequence needs one token past the shared part: its next-token logits come from prefilling it.
    """
    if not sequences:
        return 0
    first, n = sequences[0], min(len(s) for s in sequences) - 1
    for i in range(max(n, 0)):
        if any(s[i] != first[i] for s in sequences[1:]):
            return i
    return max(n, 0)
