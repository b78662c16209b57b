"""Yes/no questions: checking one, the prompt that asks it, and P(yes) read from the next-token logits.

The answer is never parsed from generated text. The question is asked so that the model's first answer
token is "Yes" or "No" (GLM-Edge-V's template ends with `<|assistant|>\n`, so the answer's first word
starts the reply); P(yes) is the softmax mass of the yes-token variants over that of the yes and no
variants together, at that first position: one decode step, the prefill's last logits.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

MAX_QUESTION_CHARS = 1000  # a question is a sentence or two; a pasted document is a mistake
ANSWER_INSTRUCTION = "Answer yes or no."
YES_WORDS = ("Yes", "yes", "YES", " Yes", " yes")
NO_WORDS = ("No", "no", "NO", " No", " no")


class BadQuestion(ValueError):
    """A question that cannot be asked: empty, too long, or holding control characters."""


def validate_question(text: str, max_chars: int = MAX_QUESTION_CHARS) -> str:
    """The question with surrounding whitespace removed, or `BadQuestion` naming what is wrong."""
    if not isinstance(text, str):
        raise BadQuestion(f"a question must be text, not {type(text).__name__}")
    question = text.strip()
    if not question:
        raise BadQuestion("the question is empty")
    if len(question) > max_chars:
        raise BadQuestion(f"the question is {len(question)} characters long; the limit is {max_chars}")
    bad = sorted({c for c in question if unicodedata.category(c) == "Cc"})
    if bad:
        names = ", ".join(f"U+{ord(c):04X}" for c in bad)
        raise BadQuestion(f"the question holds control characters ({names}); ask it on one line")
    return question


def question_prompt(question: str) -> str:
    """The user text that asks `question` so that the reply starts with Yes or No."""
    return f"{question} {ANSWER_INSTRUCTION}"


@dataclass(frozen=True)
class AnswerTokens:
    """The token ids whose probability counts as yes, and as no."""

    yes: tuple[int, ...]
    no: tuple[int, ...]


def answer_tokens(encode: Callable[[str], Sequence[int]], unknown: int | None = None) -> AnswerTokens:
    """The single-token spellings of yes and no in a tokenizer (`encode` gives ids, no special tokens).

    Spellings that take several tokens or map to the unknown token are skipped; raises ValueError when
    either side has none (the model could not say that word as its first token).
    """

    def ids(words: Sequence[str]) -> tuple[int, ...]:
        found: list[int] = []
        for word in words:
            got = list(encode(word))
            if len(got) == 1 and got[0] != unknown and got[0] not in found:
                found.append(got[0])
        return tuple(found)

    yes, no = ids(YES_WORDS), ids(NO_WORDS)
    if not yes or not no or set(yes) & set(no):
        raise ValueError(f"the tokenizer has no single-token yes and no (yes ids {yes}, no ids {no})")
    return AnswerTokens(yes=yes, no=no)


def p_yes(logits: np.ndarray, tokens: AnswerTokens) -> float:
    """P(yes) / (P(yes) + P(no)) from one position's logits [V], in float64.

    The softmax's denominator cancels, so only the yes and no logits matter: with log-sum-exps
    `ly`, `ln` of each side, the answer is the logistic of `ly - ln` (no overflow at any scale).
    """
    x = np.asarray(logits, np.float64).reshape(-1)
    if not np.all(np.isfinite(x[list(tokens.yes) + list(tokens.no)])):
        raise ValueError("the yes/no logits are not finite")
    ly, ln = _logsumexp(x[list(tokens.yes)]), _logsumexp(x[list(tokens.no)])
    d = ln - ly
    if d >= 0:
        e = float(np.exp(-d))
        return e / (1.0 + e)
    return 1.0 / (1.0 + float(np.exp(d)))


def _logsumexp(v: np.ndarray) -> float:
    top = float(np.max(v))
    return top + float(np.log(np.sum(np.exp(v - top))))
