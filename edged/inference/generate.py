"""Greedy token choice and stopping rules: pure functions of the logits and what came before."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GenerationParams:
    """Greedy decoding settings for one request."""

    max_new_tokens: int
    repetition_penalty: float
    stop_ids: frozenset[int]

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1 (got {self.max_new_tokens})")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0 (got {self.repetition_penalty})")


def penalize(logits: np.ndarray, seen: Iterable[int], penalty: float) -> np.ndarray:
    """transformers' repetition penalty: positive logits of seen ids are divided, negative multiplied."""
    if penalty == 1.0:
        return logits
    ids = np.fromiter(set(seen), dtype=np.int64)
    if ids.size == 0:
        return logits
    out: np.ndarray = logits.copy()
    chosen = out[ids]
    out[ids] = np.where(chosen < 0, chosen * penalty, chosen / penalty)
    return out


def pick(logits: np.ndarray, seen: Iterable[int], penalty: float) -> int:
    """The greedy token (lowest id on ties, as argmax everywhere)."""
    return int(np.argmax(penalize(logits, seen, penalty)))
