"""The captioner protocol every vision-language backend implements (onnx, remote)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

FinishReason = Literal["stop", "length", "cancelled", "deadline"]


class ModelUnavailable(RuntimeError):
    """The configured model cannot be loaded; `hint` is the command or step that fixes it."""

    def __init__(self, message: str, hint: str = "") -> None:
        self.hint = hint
        super().__init__(f"{message}; {hint}" if hint else message)


@dataclass(frozen=True)
class CaptionResult:
    """What a backend produced for one image and prompt."""

    text: str
    tokens: tuple[int, ...]
    model: str
    finish_reason: FinishReason
    timings: Mapping[str, float] = field(default_factory=dict)  # milliseconds per stage
    peak_rss_mb: float = 0.0


@runtime_checkable
class Captioner(Protocol):
    """A vision-language model: describe an image, or answer a question about it."""

    name: str

    def caption(
        self,
        image: np.ndarray,
        prompt: str,
        *,
        max_new_tokens: int | None = None,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> CaptionResult:
        """Caption a BGR uint8 `image`.

        Generation stops early, returning what it has, when `cancel` is set (`finish_reason`
        "cancelled") or the monotonic clock passes `deadline` ("deadline"); both are checked between
        tokens. `on_token` receives each new piece of text as it is decoded.
        """
        ...

    def close(self) -> None:
        """Release sessions and memory."""
        ...


@dataclass(frozen=True)
class YesNo:
    """A yes/no question's answer, read from the model's next-token probabilities, not parsed from text."""

    question: str
    p_yes: float  # P(yes) / (P(yes) + P(no)) at the first answer position

    @property
    def answer(self) -> str:
        return "yes" if self.p_yes >= 0.5 else "no"


@dataclass(frozen=True)
class Look:
    """Everything asked of one image in one pass: free-text prompts (a caption, asks) and yes/no questions."""

    texts: tuple[CaptionResult, ...]  # one per prompt, in order
    answers: tuple[YesNo, ...]  # one per question, in order
    timings: Mapping[str, float] = field(default_factory=dict)  # ms per stage, plus "vision_passes"


@runtime_checkable
class Looker(Protocol):
    """A backend that answers several prompts and questions about one image sharing its encode."""

    def look(
        self,
        image: np.ndarray,
        prompts: Sequence[str],
        questions: Sequence[str],
        *,
        max_new_tokens: int | None = None,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Look:
        """Encode `image` once; generate for each prompt and score each question on the shared prefix.

        Questions are answered first (one decode step each), then the prompts. Stops like
        `Captioner.caption` on `cancel` or `deadline`: results already complete are kept, the rest are
        absent (fewer entries than asked), so a caller can tell what was answered; a prompt cut short
        mid-generation is kept as `caption` keeps it (partial text, `finish_reason` "cancelled" or
        "deadline"). A bad question (empty, over 1000 characters, control characters) raises
        `edged.inference.yesno.BadQuestion` (a ValueError) before any model work. `timings` holds
        ms per stage and "vision_passes".
        """
        ...
