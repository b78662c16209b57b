"""Yes/no answers from logits, question checks and the shared prefix: pure functions, table tests."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edged.inference.prompt import shared_prefix
from edged.inference.yesno import (
    MAX_QUESTION_CHARS,
    AnswerTokens,
    BadQuestion,
    answer_tokens,
    p_yes,
    question_prompt,
    validate_question,
)

TOKENS = AnswerTokens(yes=(1, 2), no=(3,))


def logits(values: dict[int, float], size: int = 6, rest: float = 0.0) -> np.ndarray:
    out = np.full(size, rest, np.float32)
    for i, v in values.items():
        out[i] = v
    return out


@pytest.mark.parametrize(
    ("yes", "values", "want"),
    [
        ((1,), {1: 0.0, 3: 0.0}, 0.5),  # one yes spelling, as likely as no
        ((1, 2), {1: 0.0, 2: 0.0, 3: 0.0}, 2 / 3),  # two yes spellings add up: 2 : 1
        ((1,), {1: math.log(3.0), 3: 0.0}, 0.75),
        ((1, 2), {1: -50.0, 2: -50.0, 3: 50.0}, 2 * math.exp(-100.0) / (1 + 2 * math.exp(-100.0))),
        ((1, 2), {1: 1000.0, 2: 1000.0, 3: -1000.0}, 1.0),  # no overflow at any scale
        ((1, 2), {1: -1000.0, 2: -1000.0, 3: 1000.0}, 0.0),
    ],
)
def test_p_yes_is_the_yes_mass_over_yes_and_no(yes: tuple[int, ...], values: dict[int, float], want: float) -> None:
    """P(yes) sums the probabilities of every yes spelling against every no spelling (float32 logits
    in, so agreement to float32 rounding)."""
    assert p_yes(logits(values), AnswerTokens(yes=yes, no=(3,))) == pytest.approx(want, rel=1e-6, abs=1e-300)


def test_p_yes_ignores_every_other_token() -> None:
    """Other tokens (the whole softmax denominator) do not change the answer."""
    a = logits({1: 0.3, 2: -1.0, 3: 0.1}, rest=0.0)
    b = logits({1: 0.3, 2: -1.0, 3: 0.1}, rest=40.0)
    assert p_yes(a, TOKENS) == p_yes(b, TOKENS)


def test_p_yes_rejects_non_finite_logits() -> None:
    with pytest.raises(ValueError, match="not finite"):
        p_yes(logits({1: np.nan, 3: 0.0}), TOKENS)


@pytest.mark.parametrize(
    ("question", "problem"),
    [
        ("", "empty"),
        ("   \t ", "empty"),
        ("x" * (MAX_QUESTION_CHARS + 1), "limit is"),
        ("Is it " + "very " * 2000 + "dark?", "limit is"),  # about 10 kB
        ("Is the door\nopen?", "U+000A"),
        ("Is the door\x00 open?", "U+0000"),
        ("Is the \x1b[31mdoor open?", "U+001B"),
    ],
)
def test_bad_questions_are_named(question: str, problem: str) -> None:
    """Each bad question raises a ValueError subclass whose message says what is wrong."""
    with pytest.raises(BadQuestion, match=problem.replace("+", r"\+")) as info:
        validate_question(question)
    assert isinstance(info.value, ValueError)


def test_good_question_is_trimmed() -> None:
    assert validate_question("  Is the garage door open?\n") == "Is the garage door open?"
    assert validate_question("Ist die Tür offen? 🚪") == "Ist die Tür offen? 🚪"


def test_question_prompt_asks_for_a_one_word_answer() -> None:
    assert question_prompt("Is it night?") == "Is it night? Answer yes or no."


def test_answer_tokens_keep_single_token_spellings() -> None:
    """Multi-token and unknown spellings are skipped; duplicates (" Yes" == "Yes") counted once."""
    vocab = {"Yes": 10, "yes": 11, "No": 20, "no": 21, "YES": 99}

    def encode(word: str) -> list[int]:
        w = word.strip()
        return [vocab[w]] if w in vocab and w != "YES" else [7, 8] if w == "NO" else [99]

    got = answer_tokens(encode, unknown=99)
    assert got == AnswerTokens(yes=(10, 11), no=(20, 21))


def test_answer_tokens_missing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no single-token yes and no"):
        answer_tokens(lambda w: [5] if "es" in w else [1, 2])


@pytest.mark.parametrize(
    ("sequences", "want"),
    [
        ([], 0),
        ([(1, 2, 3)], 2),  # alone, it still keeps one token of its own
        ([(1, 2, 3, 4), (1, 2, 5)], 2),
        ([(1, 2, 3), (1, 2, 3)], 2),  # identical: each still prefills its last token
        ([(1, 2, 3, 4), (1, 2)], 1),  # one is a prefix of the other
        ([(9, 2), (1, 2)], 0),
    ],
)
def test_shared_prefix(sequences: list[tuple[int, ...]], want: int) -> None:
    assert shared_prefix(sequences) == want
