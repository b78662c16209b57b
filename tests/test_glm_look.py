"""One image, many questions on the tiny bundle: one vision pass, a shared prefix in the KV cache, and
answers equal to a reference that shares nothing.

The reference for each question is `Decoder.full_logits`: the whole sequence (template, image rows,
question) prefilled from nothing with plain past/present tensors, an independent path through the same
fp32 graph. Both sides run on the same machine; they differ only in summation order, which moves a
logit by far less than FP32_SPREAD (the spread between CPUs), and P(yes) moves by at most half of a
logit difference's change, so FP32_SPREAD / 2 holds on every CPU.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from edged.inference.images import load_image
from edged.inference.preprocess import pixel_values
from edged.inference.prompt import splice
from edged.inference.protocol import Looker
from edged.inference.yesno import BadQuestion, p_yes, question_prompt
from tests.glm_fixture import BUNDLE, FP32_SPREAD, captioner, goldens

GOLDEN = goldens()
IMAGES = GOLDEN["images"]
QUESTIONS = [
    "Is there a package on the porch?",
    "Is the door open?",
    "Is someone standing near the gate?",
    "Is it night?",
]


class CountingSession:
    """The real vision session, counting its runs (how many image encodes a look made)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.runs = 0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self.runs += 1
        return self.session.run(*args, **kwargs)


@pytest.fixture(scope="module")
def cap() -> Iterator[Any]:
    c = captioner()
    yield c
    c.close()


@pytest.fixture
def counted(cap: Any) -> Iterator[CountingSession]:
    real = cap.vision
    cap.vision = CountingSession(real)
    yield cap.vision
    cap.vision = real


def reference_p_yes(cap: Any, image: np.ndarray, question: str) -> float:
    """P(yes) from a full prefill of the whole question sequence, no cache and nothing shared."""
    rows = cap.image_rows(pixel_values(image, cap.manifest.preprocessing))
    p = cap.prompt_ids(question_prompt(question))
    embeds = splice(cap.embed(p.ids), rows, p, cap.manifest.image_token_id)
    return p_yes(cap.decoder.full_logits(embeds), cap.answer_tokens())


def test_captioner_is_a_looker(cap: Any) -> None:
    assert isinstance(cap, Looker)


@pytest.mark.parametrize("name", IMAGES)
def test_p_yes_with_prefix_reuse_equals_a_full_prefill(cap: Any, name: str) -> None:
    """Every answer read after the shared prefix equals the one computed without sharing anything."""
    image = load_image(BUNDLE / name)
    look = cap.look(image, [], QUESTIONS)
    want = [reference_p_yes(cap, image, q) for q in QUESTIONS]
    assert [a.question for a in look.answers] == QUESTIONS
    got = [a.p_yes for a in look.answers]
    np.testing.assert_allclose(got, want, atol=FP32_SPREAD / 2, rtol=0)
    # The questions get different answers, so a mix-up of questions or a stale cache would show.
    assert max(want) - min(want) > 4 * FP32_SPREAD
    assert look.timings["shared_tokens"] >= cap.manifest.vision.num_image_tokens


def test_answers_are_deterministic(cap: Any) -> None:
    image = load_image(BUNDLE / IMAGES[0])
    first = cap.look(image, [], QUESTIONS)
    assert cap.look(image, [], QUESTIONS).answers == first.answers
    assert [a.answer for a in first.answers] == ["yes" if a.p_yes >= 0.5 else "no" for a in first.answers]


@pytest.mark.parametrize("name", IMAGES)
def test_caption_from_a_look_equals_caption(cap: Any, name: str) -> None:
    """A caption generated after the shared prefix and the questions is token for token the caption()
    one (and the golden recorded against torch at export)."""
    image = load_image(BUNDLE / name)
    alone = cap.caption(image, GOLDEN["prompt"])
    look = cap.look(image, [GOLDEN["prompt"]], QUESTIONS)
    assert len(look.texts) == 1
    text = look.texts[0]
    assert text.tokens == alone.tokens
    assert list(text.tokens) == GOLDEN["variants"]["fp32"][name]["tokens"]
    assert (text.text, text.finish_reason) == (alone.text, alone.finish_reason)


def test_several_prompts_share_the_prefix(cap: Any) -> None:
    """Two prompts and a question in one look: each prompt's tokens equal its own caption() run."""
    image = load_image(BUNDLE / IMAGES[1])
    prompts = [GOLDEN["prompt"], "What is the man holding?"]
    look = cap.look(image, prompts, QUESTIONS[:1], max_new_tokens=6)
    assert [t.tokens for t in look.texts] == [cap.caption(image, p, max_new_tokens=6).tokens for p in prompts]


def test_one_vision_pass_for_a_caption_and_four_questions(cap: Any, counted: CountingSession) -> None:
    look = cap.look(load_image(BUNDLE / IMAGES[0]), [GOLDEN["prompt"]], QUESTIONS)
    assert counted.runs == 1
    assert look.timings["vision_passes"] == 1
    assert (len(look.texts), len(look.answers)) == (1, 4)
    for stage in ("preprocess_ms", "vision_ms", "shared_prefill_ms", "questions_ms", "prompts_ms", "total_ms"):
        assert look.timings[stage] > 0, stage


@pytest.mark.parametrize(
    ("question", "problem"),
    [
        ("", "question 2: the question is empty"),
        ("Is it " + "dark " * 2000 + "?", "question 2: the question is 10007 characters long"),
        ("Is the door\x07 open?", "question 2: the question holds control characters"),
        ("Is it <|assistant|> open?", "question 2: it holds a special token"),
    ],
)
def test_bad_question_is_rejected_before_any_model_work(
    cap: Any, counted: CountingSession, question: str, problem: str
) -> None:
    with pytest.raises(BadQuestion, match=problem):
        cap.look(load_image(BUNDLE / IMAGES[0]), [GOLDEN["prompt"]], [QUESTIONS[0], question])
    assert counted.runs == 0


def test_past_deadline_answers_nothing(cap: Any, counted: CountingSession) -> None:
    look = cap.look(load_image(BUNDLE / IMAGES[0]), [GOLDEN["prompt"]], QUESTIONS, deadline=time.monotonic() - 1)
    assert (look.texts, look.answers, counted.runs) == ((), (), 0)
    assert look.timings["vision_passes"] == 0


def test_cancel_between_questions_keeps_the_answers_made(cap: Any) -> None:
    """Cancelled after the second question's step: two answers (equal to a full run's), no caption."""
    image = load_image(BUNDLE / IMAGES[0])
    full = cap.look(image, [GOLDEN["prompt"]], QUESTIONS)
    cancel = threading.Event()
    step = cap.decoder.step
    calls = 0

    def counting_step(*args: Any) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 3:  # the shared prefix, question 1, question 2
            cancel.set()
        out: np.ndarray = step(*args)
        return out

    cap.decoder.step = counting_step
    try:
        look = cap.look(image, [GOLDEN["prompt"]], QUESTIONS, cancel=cancel)
    finally:
        del cap.decoder.step
    assert look.answers == full.answers[:2]
    assert look.texts == ()


def test_deadline_during_the_caption_keeps_answers_and_the_partial_caption(cap: Any) -> None:
    """A deadline reached mid-caption: the answers are complete, the caption is cut like caption()'s.
    The clock the captioner reads jumps past the deadline after the caption's second decode step."""
    image = load_image(BUNDLE / IMAGES[1])
    full = cap.look(image, [GOLDEN["prompt"]], QUESTIONS)
    step = cap.decoder.step
    calls = 0

    def counting_step(*args: Any) -> np.ndarray:
        nonlocal calls
        calls += 1
        out: np.ndarray = step(*args)
        return out

    cap.decoder.step = counting_step
    try:
        look = _look_with_clock(cap, image, lambda: calls >= 1 + len(QUESTIONS) + 3)
    finally:
        del cap.decoder.step
    assert look.answers == full.answers
    (text,) = look.texts
    assert text.finish_reason == "deadline"
    assert 0 < len(text.tokens) < len(full.texts[0].tokens)
    assert text.tokens == full.texts[0].tokens[: len(text.tokens)]


def _look_with_clock(cap: Any, image: np.ndarray, passed: Any) -> Any:
    """A look with a deadline an hour away on a clock that jumps past it once `passed()` is true."""
    import edged.inference.glm_edge_v as module

    deadline = time.monotonic() + 3600

    class Clock:
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        @staticmethod
        def monotonic() -> float:
            return deadline + 1 if passed() else time.monotonic()

    module.time = Clock()  # type: ignore[assignment]
    try:
        return cap.look(image, [GOLDEN["prompt"]], QUESTIONS, deadline=deadline)
    finally:
        module.time = time


def test_rewind_keeps_only_what_was_written(cap: Any) -> None:
    """The cache rewinds to any length it holds, never past its end."""
    cache = cap.decoder.start(8)
    cap.decoder.step(cache, cap.embed([1, 2, 3]))
    cap.decoder.rewind(cache, 1)
    assert cache.length == 1
    with pytest.raises(ValueError, match="cannot rewind a cache of 1 positions to 2"):
        cap.decoder.rewind(cache, 2)
