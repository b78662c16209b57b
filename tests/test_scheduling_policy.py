"""The scheduler's pure decisions, table by table."""

from __future__ import annotations

import numpy as np
import pytest

from edged.analysis.history import AnalysedFrame
from edged.analysis.scene import FrameQuality
from edged.events import TriggerKind
from edged.scheduling.captions import DEFAULT_LABELS, Rule, labels_of, matching_rules, similarity, title_of
from edged.scheduling.frame_choice import choose_frame
from edged.scheduling.policy import ASK_QUEUE, AdaptiveInterval, admit, choose_next, should_preempt
from edged.scheduling.triggers import IMAGE_LANE, HandedImage, StreamSink, Trigger


def t(kind: str, camera: str = "a", ts: float = 0.0, deadline: float = 100.0, question: str = "") -> Trigger:
    return Trigger(TriggerKind(kind), camera, ts, deadline, question=question)


def image(ts: float = 0.0) -> Trigger:
    """A handed-in image (the HTTP API's lane), at request priority."""
    return Trigger(TriggerKind.REQUEST, IMAGE_LANE, ts, 100.0, image=HandedImage(np.zeros((2, 2, 3), np.uint8), "?"))


def test_latest_wins_for_the_same_priority() -> None:
    """A newer motion trigger replaces a pending older one (it would caption an older moment)."""
    old, new = t("motion", ts=1), t("motion", ts=2)
    pending, dropped = admit([old], new)
    assert pending == [new]
    assert dropped == [old]


def test_higher_priority_replaces_lower_and_not_the_reverse() -> None:
    """A keyword replaces a pending periodic; a periodic arriving behind a pending keyword is dropped."""
    periodic, keyword = t("periodic", ts=1), t("keyword", ts=2)
    assert admit([periodic], keyword) == ([keyword], [periodic])
    late_periodic = t("periodic", ts=3)
    assert admit([keyword], late_periodic) == ([keyword], [late_periodic])


def test_questions_queue_in_order_up_to_a_limit() -> None:
    """Each ask is its own question: they queue (bounded) instead of replacing each other."""
    asks = [t("ask", ts=i, question=f"q{i}") for i in range(ASK_QUEUE)]
    pending: list[Trigger] = []
    for a in asks:
        pending, dropped = admit(pending, a)
        assert dropped == []
    extra = t("ask", ts=9, question="one too many")
    pending, dropped = admit(pending, extra)
    assert dropped == [extra]
    assert pending == asks
    motion = t("motion", ts=10)
    pending, dropped = admit(pending, motion)
    assert dropped == []
    assert motion in pending


def test_handed_images_queue_in_order_and_displace_nothing() -> None:
    """Each image has its own caller: none replaces another (the API bounds how many are in flight)."""
    first, second = image(ts=1), image(ts=2)
    pending, dropped = admit([], first)
    pending, dropped = admit(pending, second)
    assert (pending, dropped) == ([first, second], [])


def test_an_image_lane_takes_turns_with_cameras_and_outranks_their_motion() -> None:
    """The image lane is one more lane: request priority beats motion; among requests the lane served
    longest ago goes first, so a stream of API calls cannot keep a camera's caption_now waiting."""
    img = image(ts=0)
    pending = {"a": [t("motion", "a", ts=0)], IMAGE_LANE: [img]}
    assert choose_next(pending, 0, 0, {}).run is img
    request = t("request", "a", ts=5)
    pending = {"a": [request], IMAGE_LANE: [img]}
    assert choose_next(pending, 0, 0, {IMAGE_LANE: 10.0, "a": 3.0}).run is request
    assert choose_next(pending, 0, 0, {IMAGE_LANE: 3.0, "a": 10.0}).run is img
    assert should_preempt(t("motion"), [img]) is img
    assert should_preempt(img, [t("request", "b"), t("keyword", "b")]) is None


def test_after_an_image_waiting_camera_work_goes_next_whatever_its_priority() -> None:
    """Turn-taking: right after an image, a waiting periodic caption goes before the next image; with no
    camera work waiting, images take every turn; otherwise priority decides as always."""
    img, periodic = image(ts=0), t("periodic", "a", ts=5)
    pending = {IMAGE_LANE: [img], "a": [periodic]}
    assert choose_next(pending, 0, 0, {}).run is img
    assert choose_next(pending, 0, 0, {}, after_image=True).run is periodic
    assert choose_next({IMAGE_LANE: [img], "a": []}, 0, 0, {}, after_image=True).run is img
    keyword = t("keyword", "a", ts=6)
    assert choose_next({IMAGE_LANE: [img], "a": [periodic, keyword]}, 0, 0, {}, after_image=True).run is keyword


def test_a_cameras_job_on_its_turn_is_not_preempted_by_images_but_by_camera_work() -> None:
    """A motion caption running on its turn after an image finishes before the next image; a keyword
    still preempts it (camera priorities are untouched)."""
    motion = t("motion")
    assert should_preempt(motion, [image()], cameras_turn=False) is not None
    assert should_preempt(motion, [image()], cameras_turn=True) is None
    keyword = t("keyword", "a")
    assert should_preempt(motion, [image(), keyword], cameras_turn=True) is keyword


@pytest.mark.parametrize(("runs", "forwarded"), [
    ([["A ", "cat"]], ["A ", "cat"]),  # one run: every piece
    ([["A ", "ca"], ["A ", "cat", "."]], ["A ", "ca", "t", "."]),  # preempted, run again: only what is new
    ([["A dog"], ["A"]], ["A dog"]),  # a rerun that stops earlier forwards nothing
    ([[], ["Hi"]], ["Hi"]),
])
def test_a_stream_never_repeats_text_across_reruns(runs: list[list[str]], forwarded: list[str]) -> None:
    """A preempted job starts again from its first token; its caller sees each character once."""
    out: list[str] = []
    sink = StreamSink(out.append)
    for pieces in runs:
        sink.restart()
        for piece in pieces:
            sink(piece)
    assert out == forwarded


@pytest.mark.parametrize(("now", "expected", "stale"), [(0, 5, False), (96, 5, True), (94, 5, False)])
def test_a_job_that_would_miss_its_deadline_is_stale(now: float, expected: float, stale: bool) -> None:
    """Stale = now + the expected caption time is past the deadline."""
    trig = t("motion", deadline=100)
    decision = choose_next({"a": [trig]}, now, expected, {})
    assert (decision.run is None) == stale
    assert (trig in decision.stale) == stale


def test_priority_first_then_fairness_then_age() -> None:
    """ask > keyword > motion > periodic; among equals the camera served longest ago goes first."""
    pending = {"a": [t("motion", "a", ts=1)], "b": [t("motion", "b", ts=2)], "c": [t("periodic", "c", ts=0)]}
    assert choose_next(pending, 0, 0, {"a": 50.0, "b": 10.0}).run is pending["b"][0]
    assert choose_next(pending, 0, 0, {}).run is pending["a"][0]  # never served: oldest first
    pending["c"].append(t("keyword", "c", ts=5))
    assert choose_next(pending, 0, 0, {}).run is pending["c"][1]


def test_preemption_only_by_strictly_higher_priority() -> None:
    """A running periodic yields to motion; a running keyword doesn't yield to motion."""
    assert should_preempt(t("periodic"), [t("motion", "b")]) is not None
    assert should_preempt(t("keyword"), [t("motion", "b")]) is None
    assert should_preempt(t("motion"), [t("ask", "b")]) is not None


def test_adaptive_interval_moves_between_its_bounds() -> None:
    """Quiet scenes slow down toward max; activity speeds up toward min."""
    iv = AdaptiveInterval.start(60, 900)
    quiet = [iv := iv.after(busy=False) for _ in range(10)]
    assert [round(q.current) for q in quiet[:3]] == [90, 135, 202]
    assert quiet[-1].current == 900
    busy = quiet[-1].after(busy=True).after(busy=True)
    assert busy.current == 225
    assert busy.after(busy=True).after(busy=True).after(busy=True).current == 60


def frame(ts: float, area: float, sharpness: float, flat: float = 0.1) -> AnalysedFrame:
    img = np.zeros((4, 4, 3), np.uint8)
    return AnalysedFrame("a", int(ts * 10), ts, ts, ts, img, quality=FrameQuality(sharpness, flat), motion_area=area,
                         motion=area > 0)


def test_frame_choice_prefers_sharp_frames_with_the_most_motion() -> None:
    """The blurred frame with the largest area loses to a sharp one with slightly less."""
    frames = [frame(1, 0.05, 100), frame(2, 0.30, 20), frame(3, 0.25, 110), frame(4, 0.10, 90)]
    assert choose_frame(frames, prefer_motion=True) is frames[2]


def test_frame_choice_for_requests_is_the_latest_sharp_frame() -> None:
    """Asked about now: the newest frame that isn't blurred or half-decoded."""
    frames = [frame(1, 0.0, 100), frame(2, 0.0, 95), frame(3, 0.0, 10), frame(4, 0.0, 100, flat=0.6)]
    assert choose_frame(frames, prefer_motion=False) is frames[1]
    assert choose_frame([], prefer_motion=False) is None
    assert choose_frame([frame(1, 0.0, 0.0, flat=1.0)], prefer_motion=False) is None  # a blank frame


@pytest.mark.parametrize(("a", "b", "same"), [
    ("A person is standing at the door.", "A person stands at the door", True),
    ("There is a car in the driveway.", "The image shows a car in the driveway.", True),
    ("A person is standing at the door.", "A dog is running across the lawn.", False),
    ("An empty porch.", "A man delivers a parcel to the porch.", False),
])
def test_caption_similarity(a: str, b: str, same: bool) -> None:
    """Re-wordings of the same scene are similar; different scenes are not."""
    assert (similarity(a, b) >= 0.8) == same


@pytest.mark.parametrize(("text", "labels"), [
    ("A man in a blue jacket walks toward the door carrying a parcel.", ("person", "package")),
    ("Two cars are parked in the driveway.", ("vehicle",)),
    ("A cat sits on the fence.", ("animal",)),
    ("The porch is empty; no people or vehicles are visible.", ()),
    ("There is nobody at the door.", ()),
    ("A delivery driver leaves boxes by the gate.", ("person", "package")),
])
def test_labels_from_synonyms_with_negation(text: str, labels: tuple[str, ...]) -> None:
    """Words map to labels; 'no people' does not mean a person."""
    assert labels_of(text, DEFAULT_LABELS) == labels


def test_title_fits_home_assistant() -> None:
    """The title is the first sentence, cut at a word boundary to 255 characters."""
    assert title_of("A cat. It sleeps.") == "A cat."
    long = "word " * 100
    title = title_of(long)
    assert len(title) <= 255
    assert title.endswith("…")


def test_rules_match_labels_text_cameras_and_triggers() -> None:
    """A rule fires only where all of its conditions hold."""
    import re

    rules = [Rule("delivery", labels=("package",)), Rule("red_car", pattern=re.compile("red (car|van)", re.I)),
             Rule("porch_only", cameras=("porch",), labels=("person",), triggers=("motion",))]
    assert matching_rules(rules, "porch", "motion", "A person with a parcel.", ("person", "package")) == [
        "delivery", "porch_only"]
    assert matching_rules(rules, "yard", "periodic", "A RED car parks.", ("vehicle",)) == ["red_car"]
    assert matching_rules(rules, "yard", "motion", "A person.", ("person",)) == []
