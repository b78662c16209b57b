"""Random payloads on every command topic: no crash, no state change on bad input, an error answer each time."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edged.control.commands import MAX_PAYLOAD, CommandError, Rejected, Request, SetFeature, parse
from edged.control.executor import CommandExecutor
from edged.control.features import Feature, FeatureRegistry, FeatureStore
from edged.events import Event, FeatureState
from edged.outputs.mqtt.link import Incoming

BASE = "edged/fz"


class Harness:
    """A real registry and executor; responses and published states are recorded."""

    def __init__(self, tmp: Path) -> None:
        self.applied: list[tuple[str, Any]] = []
        self.registry = FeatureRegistry(FeatureStore(tmp / "features.json"))
        self.registry.add(Feature("porch", "privacy", "switch", "Privacy", False,
                                  lambda v: self.applied.append(("privacy", v))))
        self.registry.add(Feature("porch", "motion_threshold", "number", "Threshold", 25.0,
                                  lambda v: self.applied.append(("motion_threshold", v)), 1, 255))
        self.responses: list[tuple[str, dict[str, Any]]] = []
        self.published: list[Event] = []
        self.executor = CommandExecutor(BASE, self.registry, self.published.append,
                                        lambda t, p, c: self.responses.append((t, json.loads(p))))
        self.executor.register("health", lambda r, _resp: {"ok": True})
        self.executor.register("caption_now", self._caption_now)

    @staticmethod
    def _caption_now(request: Request, _resp: Any) -> Any:
        camera = request.args.get("camera")
        if camera != "porch":
            raise CommandError(f"unknown camera {camera!r} (cameras: porch)")
        return {"queued": True}

    def send(self, topic: str, payload: bytes) -> None:
        self.executor.execute(parse(Incoming(topic, payload), BASE, "homeassistant"))


TOPICS = [f"{BASE}/porch/privacy/set", f"{BASE}/porch/motion_threshold/set", f"{BASE}/porch/nothing/set",
          f"{BASE}/garage/privacy/set", f"{BASE}/request/health", f"{BASE}/request/caption_now",
          f"{BASE}/request/unknown", f"{BASE}/porch/privacy/set/extra"]
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=4), max_leaves=12)
payloads = st.one_of(st.binary(max_size=200), st.text(max_size=100).map(str.encode),
                     json_values.map(lambda v: json.dumps(v).encode()),
                     st.sampled_from([b"ON", b"OFF", b"on", b"1", b"25", b"-3", b"300", b"nan", b"inf", b"1e999",
                                      b"\xff\xfe", b"", b"{}", b'{"camera": "porch"}', b'{"camera": 7}']))


@settings(max_examples=400, deadline=None)
@given(topic=st.sampled_from(TOPICS), payload=payloads)
def test_random_payloads(topic: str, payload: bytes) -> None:
    """Every message gets exactly one outcome: a valid change (state published), a valid answer, or an
    error answer with the state unchanged."""
    with tempfile.TemporaryDirectory() as tmp:  # a fresh store per example: nothing carries over
        check_one(Harness(Path(tmp)), topic, payload)


def check_one(h: Harness, topic: str, payload: bytes) -> None:
    before = {(s.source, s.feature): s.value for s in h.registry.states()}
    h.send(topic, payload)
    after = {(s.source, s.feature): s.value for s in h.registry.states()}
    states = [e for e in h.published if isinstance(e, FeatureState)]
    assert len(h.responses) + len(states) == 1
    if states:  # a valid /set: exactly that feature changed, to the parsed value
        (state,) = states
        assert after[(state.source, state.feature)] == state.value
        assert {k: v for k, v in after.items() if k != (state.source, state.feature)} == {
            k: v for k, v in before.items() if k != (state.source, state.feature)}
        return
    _topic, response = h.responses[0]
    assert after == before
    assert h.applied == []
    assert response["status"] in ("ok", "error")
    if response["status"] == "error":
        assert response["error"]


def test_oversized_payload_is_refused_by_name(tmp_path: Path) -> None:
    """Over 64 KiB: an error that says so."""
    h = Harness(tmp_path)
    h.send(f"{BASE}/request/health", b"{" + b" " * MAX_PAYLOAD + b"}")
    assert "limit is 65536" in h.responses[0][1]["error"]


def test_transaction_is_echoed_even_on_error(tmp_path: Path) -> None:
    """The caller's transaction comes back on errors too."""
    h = Harness(tmp_path)
    h.send(f"{BASE}/request/caption_now", json.dumps({"camera": "garage", "transaction": "abc"}).encode())
    topic, response = h.responses[0]
    assert topic == f"{BASE}/response/caption_now"
    assert (response["status"], response["transaction"]) == ("error", "abc")
    assert "unknown camera 'garage'" in response["error"]


def test_parse_classifies_topics() -> None:
    """Set topics, requests, Home Assistant's birth message and malformed topics."""
    assert isinstance(parse(Incoming(f"{BASE}/porch/privacy/set", b"ON"), BASE, None), SetFeature)
    assert isinstance(parse(Incoming(f"{BASE}/request/health", b"{}"), BASE, None), Request)
    assert isinstance(parse(Incoming(f"{BASE}/porch/set", b"ON"), BASE, None), Rejected)
    request = parse(Incoming(f"{BASE}/request/ask", b"{}", response_topic="reply/here", correlation=b"c1"),
                    BASE, None)
    assert isinstance(request, Request)
    assert (request.response_topic, request.correlation) == ("reply/here", b"c1")


def test_set_values_persist_across_restarts_unless_the_config_changed(tmp_path: Path) -> None:
    """A /set survives a restart; editing that setting in the config wins over the saved value."""
    h = Harness(tmp_path)
    h.send(f"{BASE}/porch/motion_threshold/set", b"40")
    again = FeatureRegistry(FeatureStore(tmp_path / "features.json"))
    applied: list[Any] = []
    value = again.add(Feature("porch", "motion_threshold", "number", "T", 25.0, applied.append, 1, 255))
    assert value == 40.0
    assert applied == [40.0]
    edited = FeatureRegistry(FeatureStore(tmp_path / "features.json"))
    assert edited.add(Feature("porch", "motion_threshold", "number", "T", 30.0, applied.append, 1, 255)) == 30.0
