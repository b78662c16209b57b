"""Structured captions: the pure parser on what models write (tables), and the scheduler with a scripted
captioner standing in for the model (the tiny test model writes random words, so only a scripted one can
write a well-formed summary on demand; the real daemon's path with the tiny model is in
test_history_live.py): the prompt it sends, the fields it publishes, and the moment it remembers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edged.analysis.frame_analysis import FrameAnalysis
from edged.analysis.history import FrameHistory
from edged.config import parse_config
from edged.config.schema import HistoryConfig
from edged.events import Caption, Event, TriggerKind
from edged.inference.worker import InferenceWorker
from edged.memory.query import build_query
from edged.memory.recorder import Recorder
from edged.memory.store import search
from edged.scheduling.lifecycle import EventTracker
from edged.scheduling.scheduler import Scheduler
from edged.scheduling.summaries import STRUCTURED_PROMPT, Summary, parse_summary, threat_level_of
from tests.test_scheduler import ScriptedCaptioner, frame, scene


@pytest.mark.parametrize(("text", "expected"), [
    # the line format the prompt asks for
    ("Title: Courier at the door\nSummary: A courier leaves a parcel on the porch.\nThreat: 0",
     Summary("Courier at the door", "A courier leaves a parcel on the porch.", 0, True)),
    # markdown, other label spellings, words for levels
    ("**Title:** Person at the car\n**Summary:** Someone tries the handle of the car door.\n**Threat level:** 1",
     Summary("Person at the car", "Someone tries the handle of the car door.", 1, True)),
    ("- title - Man with crowbar\n- description: A man forces the back door.\n- threat: high",
     Summary("Man with crowbar", "A man forces the back door.", 2, True)),
    ("TITLE: Dog\nSUMMARY: A dog sleeps\non the mat.\nTHREAT: none",
     Summary("Dog", "A dog sleeps on the mat.", 0, True)),
    ("1. Title: Van\n2. Summary: A white van parks.\n3. Threat: Level 0 (normal)",
     Summary("Van", "A white van parks.", 0, True)),
    # JSON, fenced or bare, with Frigate's keys too
    ('```json\n{"title": "Car arrives", "summary": "A red car parks.", "threat_level": 0}\n```',
     Summary("Car arrives", "A red car parks.", 0, True)),
    ('{"title": "Loitering", "shortSummary": "A person waits by the gate.", "potential_threat_level": "1"}',
     Summary("Loitering", "A person waits by the gate.", 1, True)),
    ('Here you go: {"title": "Fox", "scene": "A fox crosses the lawn.", "threat_level": 0} Hope it helps',
     Summary("Fox", "A fox crosses the lawn.", 0, True)),
    # partial: a missing field costs that field only
    ("Title: Parcel on the step\nThreat: 0",
     Summary("Parcel on the step", "Parcel on the step", 0, True)),
    ("Summary: Two people talk at the gate. They leave.\nThreat: 5",
     Summary("Two people talk at the gate.", "Two people talk at the gate. They leave.", None, True)),
    ("Title: Cat\nSummary: A cat.\nThreat: maybe",
     Summary("Cat", "A cat.", None, True)),
    # not followed: the text is the summary, the first sentence the title, no threat level
    ("A person walks past the porch. It is raining.",
     Summary("A person walks past the porch.", "A person walks past the porch. It is raining.", None, False)),
    ("", Summary("", "", None, False)),
    ("{not json at all", Summary("{not json at all", "{not json at all", None, False)),
    ('{"answer": "a car"}', Summary('{"answer": "a car"}', '{"answer": "a car"}', None, False)),
    ("Threat: 2", Summary("Threat: 2", "Threat: 2", None, False)),  # a level alone says nothing to show
])
def test_parse_summary(text: str, expected: Summary) -> None:
    """The line format, markdown, JSON (Frigate's keys too), partial answers and plain text."""
    assert parse_summary(text) == expected


@pytest.mark.parametrize(("value", "level"), [
    (0, 0), (2, 2), (3, None), (1.0, 1), (True, None), (None, None), ("2", 2), ("level 1", 1), ("7", None),
    ("no threat", 0), ("Suspicious", 1), ("critical!", 2), ("", None), ("unknown", None),
])
def test_threat_level_of(value: object, level: int | None) -> None:
    """Numbers 0-2 and the words models use; anything else is no level."""
    assert threat_level_of(value) == level


def test_a_long_title_is_cut_to_home_assistants_limit() -> None:
    """A title over 255 characters is cut at a word, so the caption event can be built."""
    parsed = parse_summary("Title: " + "word " * 80 + "\nSummary: s")
    assert len(parsed.title) <= 255 and parsed.title.endswith("…")


def test_the_prompt_names_every_field() -> None:
    """The default prompt asks for the three labelled lines the parser reads first."""
    assert all(label in STRUCTURED_PROMPT for label in ("Title:", "Summary:", "Threat:"))


# -- through the scheduler ---------------------------------------------------------------------------------
class Rig:
    """A scheduler with a scripted model, a recording publisher and a real recorder."""

    def __init__(self, tmp: Path, texts: list[str], captions: str) -> None:
        self.config = parse_config(f"cameras:\n  porch: {{url: porch.mp4, captions: {captions}}}\n")
        self.published: list[Event] = []
        self.captioner = ScriptedCaptioner(texts)
        self.worker = InferenceWorker(self.captioner)
        self.recorder = Recorder(HistoryConfig(), tmp)
        self.history = FrameHistory(10)
        self.scheduler = Scheduler(self.config, {"porch": self.history}, self.worker,
                                   EventTracker(self.published.append, {}), self.published.append,
                                   FrameAnalysis.scene_distance, record=self.recorder.record)
        self.history.add(frame("porch", 1, scene(0)))
        self.recorder.start()
        self.worker.start()
        self.scheduler.start()

    def caption(self, kind: TriggerKind = TriggerKind.REQUEST, question: str = "") -> None:
        done: list[object] = []
        self.scheduler.trigger(self.scheduler.make_trigger(kind, "porch", question=question,
                                                           on_done=lambda *a: done.append(a)))
        deadline = time.monotonic() + 10
        while not done:
            assert time.monotonic() < deadline
            time.sleep(0.01)

    def stop(self) -> None:
        self.scheduler.stop()
        self.worker.stop()
        self.recorder.stop(timeout=10)


def test_structured_captions_carry_title_summary_and_threat(tmp_path: Path) -> None:
    """`captions.summary: structured`: the structured prompt is sent with the larger token budget, and the
    caption event (and the remembered moment) carries the parsed title, summary and threat level."""
    rig = Rig(tmp_path, ["Title: Man at the door\nSummary: A man tries the door handle.\nThreat: 1"],
              "{summary: structured, summary_max_tokens: 80}")
    try:
        rig.caption()
    finally:
        rig.stop()
    assert rig.captioner.prompts == [STRUCTURED_PROMPT]
    (caption,) = [e for e in rig.published if isinstance(e, Caption)]
    assert (caption.title, caption.caption, caption.summary, caption.threat_level) == (
        "Man at the door", "A man tries the door handle.", "A man tries the door handle.", 1)
    assert caption.labels == ("person",)
    payload = caption.to_payload()
    assert payload["summary"] == "A man tries the door handle." and payload["threat_level"] == 1
    (moment,) = search(tmp_path, build_query("handle", now=time.time()))
    assert (moment.title, moment.threat_level, moment.kind) == ("Man at the door", 1, "caption")


def test_a_summary_the_model_did_not_follow_keeps_its_text(tmp_path: Path) -> None:
    """A plain sentence from a structured prompt is published as the summary, with no threat level."""
    rig = Rig(tmp_path, ["A cat sleeps on the mat. Nothing else happens."], "{summary: structured}")
    try:
        rig.caption()
    finally:
        rig.stop()
    (caption,) = [e for e in rig.published if isinstance(e, Caption)]
    assert (caption.title, caption.summary, caption.threat_level) == (
        "A cat sleeps on the mat.", "A cat sleeps on the mat. Nothing else happens.", None)
    assert caption.to_payload()["threat_level"] is None


def test_plain_captions_stay_the_default_and_answers_are_never_structured(tmp_path: Path) -> None:
    """Without the setting the payload has no summary keys; an `ask` gets the question as its prompt even
    with it, and is remembered as an answer."""
    rig = Rig(tmp_path, ["Title: x\nSummary: y\nThreat: 0", "Yes, a red car."], "{summary: structured}")
    plain = Rig(tmp_path / "plain", ["A red car parks."], "{}")
    try:
        rig.caption()
        rig.caption(TriggerKind.ASK, "Is there a car?")
        plain.caption()
    finally:
        rig.stop()
        plain.stop()
    assert rig.captioner.prompts[1] == "Is there a car?"
    (moment,) = search(tmp_path, build_query("car", now=time.time()))
    assert (moment.kind, moment.question, moment.text) == ("answer", "Is there a car?", "Yes, a red car.")
    (caption,) = [e for e in plain.published if isinstance(e, Caption)]
    assert "summary" not in caption.to_payload() and "threat_level" not in caption.to_payload()
    assert plain.captioner.prompts == ["Describe what is happening in one sentence."]


def test_a_caption_with_a_bad_threat_level_is_refused() -> None:
    """The event itself allows only 0, 1, 2 or none."""
    with pytest.raises(ValueError, match="threat_level"):
        Caption("e", "porch", "t", "c", "motion", 0, 0, 0, "m", threat_level=3)


def test_a_structured_caption_round_trips_through_its_payload() -> None:
    """summary and threat_level survive to_message / from_message (a level of none too)."""
    for level in (0, 2, None):
        caption = Caption("ev-1", "porch", "Man at the door", "A man knocks.", TriggerKind.MOTION, 1.0, 2.0, 3.0,
                          "m", ("person",), "", 7, "A man knocks.", level)
        message = caption.to_message("edged/x")
        assert Caption.from_message("edged/x", message.topic, message.payload) == caption
