"""Watches through the real daemon: the tiny GLM-Edge-V bundle answers the question on frames of the porch
clip (decoded by OpenCV), and what edged publishes on a real Mosquitto is what the debounce decides.

The tiny model has random weights: which frames it says yes to is arbitrary but real (P(yes) is read
from its logits), and on the porch clip it ranges from below 0.01 to above 0.9. Which frames get asked
depends on timing, so the tests check the published stream for consistency with the debounce and wait
(with a generous timeout) for a state that the clip's frames produce, never for a number of answers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edged.scheduling.watches import Debounce
from tests.support.broker import Broker
from tests.support.daemon import DaemonProcess
from tests.support.mqtt import Received, Subscriber

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "glm-edge-v-tiny"
SAMPLE = ROOT / "samples" / "porch.mp4"
BASE = "edged/w1"
QUESTION = "Is there a package on the doormat?"
EDITED = "Is the gate open?"
MIN_CONFIDENCE, HOLD = 0.6, 1


def write_config(tmp: Path, broker: Broker) -> Path:
    config = tmp / "edged.yaml"
    config.write_text(
        f"device: {{id: w1}}\nstate_dir: {tmp / 'state'}\nlog: {{level: debug, format: json}}\n"
        f"mqtt: {{port: {broker.port}, stats_interval: 1s}}\n"
        f"models: {{captioner: {{path: {TINY}, max_new_tokens: 8}}}}\n"
        f"cameras:\n  porch:\n    url: {SAMPLE}\n    loop: true\n    motion: {{off_delay: 2s}}\n"
        "    watches:\n"
        f"      package: {{question: '{QUESTION}', on: [motion, periodic], interval: 5s,\n"
        f"                 min_confidence: {MIN_CONFIDENCE}, hold: {HOLD}}}\n")
    return config


@pytest.fixture
def sub(broker: Broker) -> Iterator[Subscriber]:
    s = Subscriber(broker.port, [f"{BASE}/#"]).start()
    yield s
    s.stop()


def attributes(sub: Subscriber, after: int = 0) -> list[dict[str, Any]]:
    """The watch's attribute payloads published (not the broker's retained copies) after the subscriber's
    first `after` messages."""
    with sub._lock:
        messages = sub.messages[after:]
    return [json.loads(m.payload) for m in messages
            if m.topic == f"{BASE}/porch/watch/package/attributes" and not m.retain]


def replay_debounce(answers: list[dict[str, Any]]) -> list[bool | None]:
    """The state after each answer, as the debounce decides it from the published p_yes values."""
    d, out = Debounce(), []
    for a in answers:
        d = d.step(a["p_yes"], MIN_CONFIDENCE, HOLD)
        out.append(d.state)
    return out


def without_repeats(values: list[Any]) -> list[Any]:
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


def state_name(state: bool | None) -> str | None:
    return None if state is None else "ON" if state else "OFF"


def test_the_daemon_publishes_a_watch_as_the_debounce_decides(tmp_path: Path, broker: Broker,
                                                              sub: Subscriber) -> None:
    """The tiny model answers on clip frames; every attributes payload carries p_yes, the frame's time and
    the state the debounce gives for the answers so far; turning ON publishes the retained state, the
    deciding frame's JPEG and a `new` event with the question as title."""
    daemon = DaemonProcess(write_config(tmp_path, broker))
    try:
        sub.wait_for(lambda _m: any(a["state"] == "ON" for a in attributes(sub)), timeout=90)
        on = next(a for a in attributes(sub) if a["state"] == "ON")
        state = sub.wait_topic(f"{BASE}/porch/watch/package", b"ON", timeout=10)
        assert state.payload == b"ON"
        snapshot = sub.wait_topic(on["snapshot"], timeout=10)
        assert snapshot.payload.startswith(b"\xff\xd8") and on["snapshot"] == f"{BASE}/porch/watch/package/snapshot"
        events = sub.wait_for(lambda m: any(b'"watch":"package"' in x.payload for x in m
                                            if x.topic == f"{BASE}/events"), timeout=10)
        new = next(json.loads(m.payload) for m in events if m.topic == f"{BASE}/events" and b'"watch"' in m.payload)
        assert (new["type"], new["trigger"], new["title"], new["has_snapshot"]) == ("new", "watch", QUESTION, True)
    finally:
        assert daemon.stop() == 0
    answers = attributes(sub)
    assert answers, "no answer published"
    for a in answers:
        assert 0.0 <= a["p_yes"] <= 1.0 and a["question"] == QUESTION and a["model"].startswith("glm-edge-v-tiny")
        assert a["frame_ts"] > 0 and a["answer"] == ("yes" if a["p_yes"] >= 0.5 else "no")
    assert [a["state"] for a in answers] == [state_name(s) for s in replay_debounce(answers)]
    published = [m.payload.decode() for m in sub.on(f"{BASE}/porch/watch/package") if not m.retain]
    states = [state_name(s) for s in replay_debounce(answers) if s is not None]
    # the state changes in order (retained state is re-asserted after start-up: repeats are not changes)
    assert without_repeats(published) == without_repeats(states)
    assert any(line.get("event") == "watch_changed" for line in daemon.lines())
    # each change is a moment of the board's history, found by the CLI with its deciding frame
    found = subprocess.run([sys.executable, "-m", "edged", "history", "search", "package", "--kind", "watch",
                            "--json", "-c", str(tmp_path / "edged.yaml")], capture_output=True, text=True, check=True)
    moments = [json.loads(line) for line in found.stdout.splitlines()]
    assert "package: ON" in {m["title"] for m in moments}, moments
    assert all(m["kind"] == "watch" and m["question"] == QUESTION and Path(m["snapshot"]).is_file() for m in moments)


def set_and_wait(sub: Subscriber, feature: str, value: str) -> Received:
    sub.publish(f"{BASE}/porch/{feature}/set", value)
    return sub.wait_topic(f"{BASE}/porch/{feature}/state", value.encode(), timeout=10)


def test_an_edited_question_and_switch_survive_a_restart(tmp_path: Path, broker: Broker, sub: Subscriber) -> None:
    """`/set` edits the question (asked at once), refuses a 10 kB one and switches the watch off; after a
    restart edged re-publishes both from its store (the broker's retained copies were cleared) and, once
    switched on again, asks the edited question."""
    config = write_config(tmp_path, broker)
    daemon = DaemonProcess(config)
    try:
        sub.wait_for(lambda _m: bool(attributes(sub)), timeout=60)
        set_and_wait(sub, "question_package", EDITED)
        sub.wait_for(lambda _m: any(a["question"] == EDITED for a in attributes(sub)), timeout=30)
        sub.publish(f"{BASE}/porch/question_package/set", "x" * 10240)
        error = json.loads(sub.wait_topic(f"{BASE}/response/set", timeout=10).payload)
        assert error["status"] == "error" and "255" in error["error"], error
        set_and_wait(sub, "watch_package", "OFF")
    finally:
        assert daemon.stop() == 0
    for feature in ("question_package", "watch_package"):  # only edged's own store can bring them back
        sub.publish(f"{BASE}/porch/{feature}/state", b"", retain=True)
    stored = json.loads((tmp_path / "state" / "features.json").read_text())
    assert stored["porch/question_package"] == {"value": EDITED, "config": QUESTION}
    count = len(sub.messages)
    again = DaemonProcess(config)
    try:
        def restored(msgs: list[Received]) -> bool:
            fresh = {(m.topic, m.payload) for m in msgs[count:]}
            return {(f"{BASE}/porch/question_package/state", EDITED.encode()),
                    (f"{BASE}/porch/watch_package/state", b"OFF")} <= fresh

        sub.wait_for(restored, timeout=60)
        assert not attributes(sub, count)  # switched off: not asked
        set_and_wait(sub, "watch_package", "ON")
        sub.wait_for(lambda _m: bool(attributes(sub, count)), timeout=30)
        assert {a["question"] for a in attributes(sub, count)} == {EDITED}
    finally:
        assert again.stop() == 0
