"""The keyword event's payload: the DESIGN.md section 3 keys, plus the explainability fields."""

from __future__ import annotations

import json

from edged.events import KeywordDetected


def test_keyword_event_round_trip() -> None:
    """to_message / from_message round-trip a keyword event, trace and backend included."""
    event = KeywordDetected(
        id="abc",
        mic="kitchen",
        keyword="okay_nabu",
        score=0.9375,
        ts=1700000000.25,
        stream_time=12.34,
        camera="porch",
        cutoff=0.85,
        trace=(0.1, 0.5, 0.9375),
        trace_step=0.03,
        backend="micro-wakeword",
    )
    message = event.to_message("edged/pi")
    payload = json.loads(message.payload)
    assert payload["event_type"] == "okay_nabu"
    assert payload["camera"] == "porch"
    assert payload["backend"] == "micro-wakeword"
    assert KeywordDetected.from_message("edged/pi", message.topic, message.payload) == event
    old = json.dumps({k: v for k, v in payload.items() if k != "backend"}).encode()
    assert KeywordDetected.from_message("edged/pi", message.topic, old).backend == ""
