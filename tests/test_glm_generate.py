"""Greedy choice and the repetition penalty, as pure functions."""

from __future__ import annotations

import numpy as np
import pytest

from edged.inference.generate import GenerationParams, penalize, pick


def test_penalty_divides_positive_and_multiplies_negative() -> None:
    """transformers' rule: seen positive logits shrink, seen negative ones grow more negative."""
    logits = np.array([2.0, -2.0, 1.0, 0.5], np.float32)
    out = penalize(logits, [0, 1], 2.0)
    np.testing.assert_allclose(out, [1.0, -4.0, 1.0, 0.5])
    np.testing.assert_allclose(logits, [2.0, -2.0, 1.0, 0.5])  # input untouched


def test_penalty_can_change_the_choice() -> None:
    """A repeated favourite loses to the runner-up once penalised."""
    logits = np.array([3.0, 2.0, 0.0], np.float32)
    assert pick(logits, [], 1.5) == 0
    assert pick(logits, [0], 2.0) == 1
    assert pick(logits, [0], 1.0) == 0


def test_ties_pick_the_lowest_id() -> None:
    """Equal logits resolve to the first index, as argmax does in the reference."""
    assert pick(np.array([1.0, 5.0, 5.0], np.float32), [], 1.0) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"max_new_tokens": 0}, "max_new_tokens"), ({"repetition_penalty": 0.0}, "repetition_penalty")],
)
def test_params_are_validated(kwargs: dict[str, float], message: str) -> None:
    """Nonsense settings are rejected when the request is made."""
    base = {"max_new_tokens": 4, "repetition_penalty": 1.0, "stop_ids": frozenset()}
    with pytest.raises(ValueError, match=message):
        GenerationParams(**{**base, **kwargs})  # type: ignore[arg-type]
