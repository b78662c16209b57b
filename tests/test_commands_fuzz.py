"""Random payloads on every command topic: no crash, no state change on bad input, an error answer each time."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.control.commands import (
    MAX_DEPTH,
    MAX_PAYLOAD,
    CommandError,
    HomeAssistantStatus,
    Rejected,
    Request,
    SetFeature,
    json_depth,
    parse,
)
from edged.control.executor import CommandExecutor
from edged.control.features import Feature, FeatureRegistry, FeatureStore
from edged.events import Event, FeatureState, Incoming

BASE = "edged/fz"


class Harness:
    """A real registry and executor; responses and published states are recorded."""

    def __init__(self, tmp: Path) -> None:
        self.applied: list[tuple[str, Any]] = []
        self.registry = FeatureRegistry(FeatureStore(tmp / "features.json"))
        self.registry.add(Feature("porch", "privacy", "switch", False,
                                  lambda v: self.applied.append(("privacy", v))))
        self.registry.add(Feature("porch", "motion_threshold", "number", 25.0,
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
          f"{BASE}/request/unknown", f"{BASE}/porch/privacy/set/extra", "homeassistant/status"]
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=4), max_leaves=12)



def deep(levels: int, kind: str, leaf: bytes, closed: bool) -> bytes:
    """`leaf` inside `levels` arrays or objects (left open when not `closed`, as in `[[[[`)."""
    opening, closing = (b"[", b"]") if kind == "list" else (b'{"k":', b"}")
    return opening * levels + leaf + (closing * levels if closed else b"")


# Hostile JSON: nested far past any limit (json.loads recurses on it), huge, or with mistyped fields.
deep_json = st.builds(deep, st.integers(0, 5000), st.sampled_from(["list", "dict"]),
                      json_values.map(lambda v: json.dumps(v).encode()), st.booleans())
mistyped = st.fixed_dictionaries({"camera": json_values, "question": json_values, "transaction": json_values}).map(
    lambda d: json.dumps(d).encode())
huge = st.integers(MAX_PAYLOAD - 8, MAX_PAYLOAD + 64).map(lambda n: b'{"camera": "' + b"a" * n + b'"}')
payloads = st.one_of(deep_json, mistyped, huge, st.binary(max_size=200), st.text(max_size=100).map(str.encode),
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
    if topic == "homeassistant/status":  # Home Assistant's own topic: never answered, never a change
        assert (h.responses, states, after) == ([], [], before)
        return
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
    """Over the size limit: an error that says so."""
    h = Harness(tmp_path)
    h.send(f"{BASE}/request/health", b"{" + b" " * MAX_PAYLOAD + b"}")
    assert f"the limit is {MAX_PAYLOAD}" in h.responses[0][1]["error"]


def test_deep_json_is_refused_without_recursing(tmp_path: Path) -> None:
    """`[` x 1000 (what once killed paho's thread through a RecursionError in json.loads) and a deep but
    well-formed object are refused by name, with the topic, before json.loads sees them."""
    h = Harness(tmp_path)
    h.send(f"{BASE}/request/health", b"[" * 1000)
    h.send(f"{BASE}/request/health", deep(MAX_DEPTH + 1, "dict", b'"x"', True))
    h.send(f"{BASE}/request/health", deep(MAX_DEPTH - 1, "dict", b'"x"', True))
    (t1, first), (_t2, second), (_t3, third) = h.responses
    assert t1 == f"{BASE}/response/health"
    assert first["error"] == f"{BASE}/request/health: JSON nests 1000 levels deep; the limit is {MAX_DEPTH}"
    assert f"nests {MAX_DEPTH + 1} levels deep" in second["error"]
    assert third["status"] == "ok"


@given(json_values)
def test_json_depth_counts_only_structure(value: Any) -> None:
    """The depth pre-check agrees with the structure of any JSON value, brackets inside strings or escapes
    ignored."""
    def depth(v: Any) -> int:
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0
    assert json_depth(json.dumps(value).encode()) == depth(value)
    assert json_depth(json.dumps(value, ensure_ascii=False).encode()) == depth(value)


@pytest.mark.parametrize(("value", "error"), [
    ({"transaction": {"a": 1}}, '"transaction" must be a string of at most 200 characters or a number (got dict)'),
    ({"transaction": "x" * 201}, "(got 201 characters)"),
])
def test_a_transaction_that_cannot_be_echoed_is_refused(tmp_path: Path, value: dict[str, Any], error: str) -> None:
    """The transaction is echoed verbatim, so only short strings and numbers are taken."""
    h = Harness(tmp_path)
    h.send(f"{BASE}/request/health", json.dumps(value).encode())
    ((_topic, response),) = h.responses
    assert response["status"] == "error"
    assert error in response["error"]
    assert response["transaction"] is None


def test_home_assistant_status_takes_online_and_offline_only(tmp_path: Path) -> None:
    """Home Assistant's birth topic: online/offline parse; anything else is a log line, not an answer."""
    assert parse(Incoming("homeassistant/status", b"online"), BASE, "homeassistant") == HomeAssistantStatus(True)
    assert parse(Incoming("homeassistant/status", b"offline"), BASE, "homeassistant") == HomeAssistantStatus(False)
    h = Harness(tmp_path)
    h.send("homeassistant/status", b"[" * 1000)
    h.send("homeassistant/status", b"\xff")
    assert h.responses == []
    assert h.executor.errors == 2


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
    value = again.add(Feature("porch", "motion_threshold", "number", 25.0, applied.append, 1, 255))
    assert value == 40.0
    assert applied == [40.0]
    edited = FeatureRegistry(FeatureStore(tmp_path / "features.json"))
    assert edited.add(Feature("porch", "motion_threshold", "number", 30.0, applied.append, 1, 255)) == 30.0


def test_a_feature_that_fails_to_apply_is_answered_and_changes_nothing(tmp_path: Path) -> None:
    """A setter that raises (privacy OFF restarting a camera that cannot start, say) gets an error answer;
    the value stays, the executor goes on, and the next command is carried out."""
    h = Harness(tmp_path)

    def broken(_value: Any) -> None:
        raise RuntimeError("camera restart failed")

    h.registry.add(Feature("porch", "captions", "switch", True, broken))
    h.send(f"{BASE}/porch/captions/set", b"OFF")
    h.send(f"{BASE}/porch/privacy/set", b"ON")
    (_topic, response), = h.responses
    assert (response["status"], response["error"]) == ("error", "internal error: camera restart failed")
    assert h.registry.value("porch", "captions") is True
    assert h.registry.value("porch", "privacy") is True
    assert h.executor.errors == 1
