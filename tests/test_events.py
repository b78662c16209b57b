"""Every published message type round-trips through its pure payload functions."""

from __future__ import annotations

import pytest

from edged import events
from edged.events import Event, PayloadError

BASE = "edged/porch-pi"

# One example per message class. A new class without an example fails `test_every_event_has_an_example`.
EXAMPLES: dict[type[Event], Event] = {
    events.Availability: events.Availability(True),
    events.SourceStatus: events.SourceStatus("porch", "offline"),
    events.SourceHealth: events.SourceHealth("porch", "camera", "reconnecting", "connect failed: refused",
                                             1_700_000_000.5, 3, 1),
    events.MotionState: events.MotionState("porch", True),
    events.KeywordDetected: events.KeywordDetected("kw-1", "porch_mic", "okay_nabu", 0.9812, 1_700_000_001.25,
                                                   12.34, "porch", 0.85, (0.1, 0.5, 0.9812), 0.03),
    events.CameraEvent: events.CameraEvent("new", "ev-1", "porch", events.TriggerKind.MOTION, 1_700_000_000.0,
                                           1_700_000_000.1,
                                           None, "Person at the door", "A person in a red coat rings the bell.",
                                           ("person",), 0.12, None, True, ("visitor",)),
    events.Caption: events.Caption("ev-1", "porch", "A person at the door", "A person at the door.",
                                   events.TriggerKind.MOTION, 1_700_000_000.0, 1_700_000_004.0, 4000.0,
                                   "glm-edge-v-2b-int4", ("person",), "", 12),
    events.CaptionUnchanged: events.CaptionUnchanged("porch", "ev-1", 1_700_000_000.0, 1_700_000_600.0, "text"),
    events.Snapshot: events.Snapshot("porch", b"\xff\xd8\xff\xe0fakejpeg"),
    events.FeatureState: events.FeatureState("porch", "motion_threshold", 25.0),
    events.WatchState: events.WatchState("porch", "package", True),
    events.WatchAttributes: events.WatchAttributes("porch", "package", True, "Is there a package on the doormat?",
                                                   0.9312, 1_700_000_000.0, 1_700_000_000.5, "glm-edge-v-tiny", 0,
                                                   f"{BASE}/porch/watch/package/snapshot"),
    events.WatchSnapshot: events.WatchSnapshot("porch", "package", b"\xff\xd8\xff\xe0fakejpeg"),
    events.CommandResponse: events.CommandResponse("health", "ok", {"healthy": True}, None, "t-42"),
    events.Stats: events.Stats(1_700_000_000.0, 12.5, {"porch": {"input_fps": 15.0}}, {"rss_mb": 80.0}),
}


def test_every_event_has_an_example() -> None:
    """The table above covers every message class in edged.events."""
    missing = [cls.__name__ for cls in events.all_event_types() if cls not in EXAMPLES]
    assert not missing, f"add examples for {missing}"


@pytest.mark.parametrize("cls", events.all_event_types(), ids=lambda c: c.__name__)
def test_round_trip(cls: type[Event]) -> None:
    """from_message(to_message(e)) == e, for every class."""
    event = EXAMPLES[cls]
    message = event.to_message(BASE)
    assert message.topic.startswith(BASE + "/")
    assert cls.from_message(BASE, message.topic, message.payload) == event


def test_delivery_properties_follow_the_contract() -> None:
    """Events are durable, state is retained, stats are QoS 0 (DESIGN.md section 3)."""
    msg = {cls: EXAMPLES[cls].to_message(BASE) for cls in EXAMPLES}
    assert msg[events.KeywordDetected].durable and not msg[events.KeywordDetected].retain
    assert msg[events.CameraEvent].durable
    assert msg[events.Caption].durable and msg[events.Caption].retain
    assert msg[events.MotionState].retain and not msg[events.MotionState].durable
    assert msg[events.Stats].qos == 0


def test_switch_and_keyword_payloads_match_home_assistant() -> None:
    """Motion is ON/OFF; a keyword carries `event_type` (HA event entity)."""
    assert events.MotionState("porch", False).to_message(BASE).payload == b"OFF"
    payload = EXAMPLES[events.KeywordDetected].to_payload()
    assert isinstance(payload, dict)
    assert payload["event_type"] == "okay_nabu"


def test_replayed_flag_is_not_part_of_the_event() -> None:
    """The outbox adds `replayed: true` to late messages; parsing ignores it."""
    message = EXAMPLES[events.CameraEvent].to_message(BASE)
    late = message.payload[:-1] + b',"replayed":true}'
    assert events.CameraEvent.from_message(BASE, message.topic, late) == EXAMPLES[events.CameraEvent]


@pytest.mark.parametrize(("cls", "topic", "payload"), [
    (events.MotionState, f"{BASE}/porch/motion", b"maybe"),
    (events.Caption, f"{BASE}/porch/caption", b"{not json"),
    (events.Snapshot, f"{BASE}/porch/snapshot", b"GIF89a"),
    (events.SourceStatus, "other/porch/status", b"online"),
    (events.WatchState, f"{BASE}/porch/watch/package", b"yes"),
    (events.WatchState, f"{BASE}/porch/motion", b"ON"),
    (events.WatchAttributes, f"{BASE}/porch/watch/package/attributes", b"[]"),
    (events.WatchAttributes, f"{BASE}/porch/watch/package/attributes", b'{"state": "maybe", "question": "q"}'),
])
def test_bad_payloads_name_the_topic(cls: type[Event], topic: str, payload: bytes) -> None:
    """A payload that doesn't fit says which topic and what is wrong."""
    with pytest.raises(PayloadError, match=topic.split("/", maxsplit=1)[0]):
        cls.from_message(BASE, topic, payload)


def test_caption_title_limit() -> None:
    """A title over Home Assistant's 255-character state limit is refused at construction."""
    with pytest.raises(ValueError, match="255"):
        events.Caption("x", "porch", "t" * 256, "", "motion", 0, 0, 0, "m")


def test_text_feature_state_and_watch_event() -> None:
    """A question edited with `/set` is a text state; a watch's event names its watch."""
    question = events.FeatureState("porch", "question_package", "Is the gate open?")
    message = question.to_message(BASE)
    assert message.payload == b"Is the gate open?" and message.retain
    assert events.FeatureState.from_message(BASE, message.topic, message.payload) == question
    event = events.CameraEvent("new", "ev-2", "porch", "watch", 1.0, 1.0, title="Is there a package?", watch="package")
    assert event.to_payload()["watch"] == "package"
    assert events.CameraEvent.from_message(BASE, f"{BASE}/events", event.to_message(BASE).payload) == event
    assert "watch" not in EXAMPLES[events.CameraEvent].to_payload()  # other events' payloads are as before
