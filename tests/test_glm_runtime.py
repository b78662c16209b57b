"""The onnx captioner on the tiny bundle: exact greedy tokens, KV cache, splice checks, stopping rules."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

from edged.export.goldens import forced_logits, margins
from edged.inference.images import load_image
from edged.inference.manifest import Generation
from edged.inference.preprocess import pixel_values
from edged.inference.prompt import SpliceError, splice
from edged.inference.protocol import Captioner
from tests.glm_fixture import BUNDLE, FP32_SPREAD, captioner, goldens

GOLDEN = goldens()
IMAGES = GOLDEN["images"]


@pytest.fixture(scope="module")
def cap():  # type: ignore[no-untyped-def]
    c = captioner()
    yield c
    c.close()


def test_captioner_satisfies_protocol(cap) -> None:  # type: ignore[no-untyped-def]
    """The backend is a `Captioner`."""
    assert isinstance(cap, Captioner)


@pytest.mark.parametrize("name", IMAGES)
def test_greedy_tokens_match_golden(cap, name: str) -> None:  # type: ignore[no-untyped-def]
    """fp32 greedy tokens equal the ones recorded (and checked against torch) at export."""
    res = cap.caption(load_image(BUNDLE / name), GOLDEN["prompt"])
    assert list(res.tokens) == GOLDEN["variants"]["fp32"][name]["tokens"]
    assert res.finish_reason in ("length", "stop")
    assert res.text == GOLDEN["variants"]["fp32"][name]["text"]


@pytest.mark.parametrize("name", IMAGES)
def test_fp32_goldens_are_clear_choices_everywhere(cap, name: str) -> None:  # type: ignore[no-untyped-def]
    """Every fp32 golden token won by more than twice the fp32 spread between machines, so the exact
    token comparisons in these tests hold on any CPU; here the margins come out as recorded."""
    golden = GOLDEN["variants"]["fp32"][name]
    assert min(golden["margins"]) > 2 * FP32_SPREAD
    rows = cap.image_rows(pixel_values(load_image(BUNDLE / name), cap.manifest.preprocessing))
    logits = forced_logits(cap, rows, GOLDEN["prompt"], golden["tokens"])
    assert list(logits.argmax(axis=-1)) == golden["tokens"]
    np.testing.assert_allclose(margins(logits), golden["margins"], atol=2 * FP32_SPREAD, rtol=0)


def test_incremental_kv_logits_equal_full_recompute(cap) -> None:  # type: ignore[no-untyped-def]
    """Each cached decode step gives the logits of recomputing the whole sequence without a cache."""
    image = load_image(BUNDLE / IMAGES[0])
    p = cap.prompt_ids(GOLDEN["prompt"])
    rows = cap.image_rows(pixel_values(image, cap.manifest.preprocessing))
    embeds = splice(cap.embed(p.ids), rows, p, cap.manifest.image_token_id)
    cache = cap.decoder.start(len(p.ids) + 8)
    logits = cap.decoder.step(cache, embeds)
    for _ in range(6):
        # Same arithmetic in another order: ~1e-5 apart (8e-5 at worst on the tall image, AVX2 or
        # AVX-512); a cache at the wrong position or stale is off by whole logits.
        np.testing.assert_allclose(logits, cap.decoder.full_logits(embeds), atol=FP32_SPREAD / 10, rtol=0)
        token = int(np.argmax(logits))
        step = cap.embed([token])
        embeds = np.concatenate([embeds, step], axis=1)
        logits = cap.decoder.step(cache, step)
    assert cache.length == embeds.shape[1]


def test_wrong_image_token_count_raises(cap) -> None:  # type: ignore[no-untyped-def]
    """A prompt that smuggles in an extra image token cannot be spliced."""
    with pytest.raises(SpliceError, match="7 image tokens but the vision encoder gave 6 rows"):
        cap.caption(load_image(BUNDLE / IMAGES[0]), "look <|begin_of_image|> here")


def test_splice_checks_row_count_and_width() -> None:
    """Too few rows, or rows of the wrong width, are errors."""
    from edged.inference.prompt import PromptIds

    p = PromptIds(ids=(1, 9, 9, 9, 2), image_start=1, image_length=3)
    embeds = np.zeros((1, 5, 4), np.float32)
    with pytest.raises(SpliceError, match="3 image tokens but the vision encoder gave 2"):
        splice(embeds, np.ones((1, 2, 4), np.float32), p, 9)
    with pytest.raises(SpliceError, match="width"):
        splice(embeds, np.ones((1, 3, 5), np.float32), p, 9)
    out = splice(embeds, np.ones((1, 3, 4), np.float32), p, 9)
    assert out[0, 1:4].tolist() == [[1.0] * 4] * 3
    assert (out[0, [0, 4]] == 0).all()


def test_max_new_tokens_is_respected(cap) -> None:  # type: ignore[no-untyped-def]
    """Generation stops after max_new_tokens with finish_reason 'length'."""
    res = cap.caption(load_image(BUNDLE / IMAGES[1]), GOLDEN["prompt"], max_new_tokens=3)
    assert list(res.tokens) == GOLDEN["variants"]["fp32"][IMAGES[1]]["tokens"][:3]
    assert res.finish_reason == "length"


def test_stop_id_ends_generation(cap) -> None:  # type: ignore[no-untyped-def]
    """A token in the stop set ends the answer, and is the last token returned."""
    expected = GOLDEN["variants"]["fp32"][IMAGES[0]]["tokens"]
    stopper = expected[4]
    first = expected.index(stopper)
    saved = cap.manifest
    cap.manifest = dataclasses.replace(saved, generation=Generation(stop_ids=(stopper,)))
    try:
        res = cap.caption(load_image(BUNDLE / IMAGES[0]), GOLDEN["prompt"])
    finally:
        cap.manifest = saved
    assert list(res.tokens) == expected[: first + 1]
    assert res.finish_reason == "stop"


def test_cancel_is_checked_between_tokens(cap) -> None:  # type: ignore[no-untyped-def]
    """Setting the event during streaming stops before the next token."""
    cancel = threading.Event()
    seen: list[str] = []

    def on_token(piece: str) -> None:
        seen.append(piece)
        if len(seen) == 3:
            cancel.set()

    res = cap.caption(load_image(BUNDLE / IMAGES[0]), GOLDEN["prompt"], cancel=cancel, on_token=on_token)
    assert res.finish_reason == "cancelled"
    assert len(res.tokens) == 3
    assert list(res.tokens) == GOLDEN["variants"]["fp32"][IMAGES[0]]["tokens"][:3]


def test_past_deadline_returns_nothing(cap) -> None:  # type: ignore[no-untyped-def]
    """A deadline already passed stops before any work."""
    res = cap.caption(load_image(BUNDLE / IMAGES[0]), GOLDEN["prompt"], deadline=time.monotonic() - 1)
    assert res.finish_reason == "deadline"
    assert res.tokens == ()


def test_deadline_reached_mid_generation_keeps_partial_answer(cap) -> None:  # type: ignore[no-untyped-def]
    """The deadline is checked between tokens: tokens made before it are returned."""
    deadline = time.monotonic() + 5.0

    def slow(piece: str) -> None:
        time.sleep(max(0.0, deadline - time.monotonic()) + 0.01)  # the first token outlives the deadline

    res = cap.caption(load_image(BUNDLE / IMAGES[0]), GOLDEN["prompt"], deadline=deadline, on_token=slow)
    assert res.finish_reason == "deadline"
    assert len(res.tokens) == 1


def test_streamed_pieces_add_up_to_the_text(cap) -> None:  # type: ignore[no-untyped-def]
    """on_token receives the caption piece by piece."""
    pieces: list[str] = []
    res = cap.caption(load_image(BUNDLE / IMAGES[2]), GOLDEN["prompt"], on_token=pieces.append)
    assert len(pieces) == len(res.tokens)
    assert "".join(pieces).strip() == res.text


def test_question_prompt_changes_the_prompt_ids(cap) -> None:  # type: ignore[no-untyped-def]
    """A free-form question is tokenised into the user turn between the image and the answer tag."""
    m = cap.manifest
    p = cap.prompt_ids("is there a dog ?")
    words = cap.tokenizer.encode("is there a dog ?", add_special_tokens=False).ids
    n = m.vision.num_image_tokens
    assert p.ids == (
        *m.prompt.prefix_ids,
        *[m.image_token_id] * n,
        *m.prompt.between_ids,
        *words,
        *m.prompt.suffix_ids,
    )
    res = cap.caption(load_image(BUNDLE / IMAGES[0]), "is there a dog ?", max_new_tokens=4)
    assert len(res.tokens) == 4


def test_timings_and_rss_are_reported(cap) -> None:  # type: ignore[no-untyped-def]
    """Each stage is timed, time inside onnxruntime is separated out, and peak RSS is set."""
    res = cap.caption(load_image(BUNDLE / IMAGES[0]), GOLDEN["prompt"])
    t = res.timings
    for key in (
        "preprocess_ms",
        "vision_ms",
        "prefill_ms",
        "decode_ms",
        "total_ms",
        "ort_ms",
        "ort_decode_ms",
    ):
        assert t[key] >= 0, key
    assert t["prompt_tokens"] == len(cap.prompt_ids(GOLDEN["prompt"]).ids)
    assert t["new_tokens"] == len(res.tokens)
    assert t["ort_decode_ms"] <= t["decode_ms"]
    assert t["total_ms"] >= t["vision_ms"] + t["prefill_ms"]
    assert res.peak_rss_mb > 10


def test_repeated_captions_reuse_the_cache_and_agree(cap) -> None:  # type: ignore[no-untyped-def]
    """A second caption (cache buffers reused) gives the same tokens."""
    image = load_image(BUNDLE / IMAGES[1])
    first = cap.caption(image, GOLDEN["prompt"]).tokens
    buffers = cap.decoder._cache
    assert cap.caption(image, GOLDEN["prompt"]).tokens == first
    assert cap.decoder._cache is buffers


def test_repetition_penalty_discourages_repeats() -> None:
    """With a strong penalty no generated token repeats a prompt or earlier token when others exist."""
    c = captioner(repetition_penalty=2.0, max_new_tokens=12)
    res = c.caption(load_image(BUNDLE / IMAGES[0]), GOLDEN["prompt"])
    assert res.tokens != tuple(GOLDEN["variants"]["fp32"][IMAGES[0]]["tokens"][:12])
    assert len(set(res.tokens)) == len(res.tokens)
