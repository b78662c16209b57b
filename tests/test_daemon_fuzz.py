"""Hostile MQTT input against the running daemon process: deep, huge, invalid and mistyped payloads on
every topic it subscribes to, then proof that it still answers, applies valid settings and publishes.

The first release died here: `[` x 1000 on `request/health` raised RecursionError in paho's network
thread, which ended it; the process stayed up, deaf and mute, with systemd's watchdog still fed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.broker import Broker
from tests.support.daemon import DaemonProcess
from tests.support.mqtt import Received, Subscriber
from tests.test_commands_fuzz import deep_json, huge, json_values, mistyped, payloads

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "porch.mp4"
TINY = ROOT / "tests" / "fixtures" / "glm-edge-v-tiny"
BASE = "edged/fz"

_probes = itertools.count()


class Live:
    """The daemon under attack, a subscriber that sees everything, and the topics edged listens on."""

    def __init__(self, daemon: DaemonProcess, sub: Subscriber, set_topics: list[str]) -> None:
        self.daemon = daemon
        self.sub = sub
        self.set_topics = set_topics

    def answers_health(self) -> dict[str, object]:
        """A health request with a fresh transaction gets its answer (commands run in order, so this also
        says that everything sent before it was handled)."""
        transaction = f"probe-{next(_probes)}"
        self.sub.publish(f"{BASE}/request/health", json.dumps({"transaction": transaction}))

        def answered(msgs: list[Received]) -> bool:
            return any(_transaction(m) == transaction for m in msgs if m.topic == f"{BASE}/response/health")

        msgs = self.sub.wait_for(answered, timeout=15)
        (reply,) = [json.loads(m.payload) for m in msgs
                    if m.topic == f"{BASE}/response/health" and _transaction(m) == transaction]
        return dict(reply)


def _transaction(message: Received) -> object:
    try:
        return json.loads(message.payload).get("transaction")
    except (ValueError, AttributeError):
        return None


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("daemon-fuzz")
    broker = Broker(tmp).start()
    config = tmp / "edged.yaml"
    config.write_text(f"device: {{id: fz, name: Fuzz}}\nstate_dir: {tmp / 'state'}\nlog: {{format: json}}\n"
                      f"mqtt: {{port: {broker.port}, stats_interval: 1}}\n"
                      f"models: {{captioner: {{path: {TINY}, max_new_tokens: 4}}}}\n"
                      f"cameras:\n  porch: {{url: {SAMPLE}, loop: true, microphone: {{device: camera, loop: true}},\n"
                      "    watches: {package: {question: 'Is there a package on the doormat?'}}}\n")
    sub = Subscriber(broker.port, [f"{BASE}/#", "homeassistant/#"]).start()
    daemon = DaemonProcess(config)
    try:
        device = sub.wait_topic("homeassistant/device/edged_fz_porch/config", timeout=30)
        mic = sub.wait_topic("homeassistant/device/edged_fz_porch_mic/config", timeout=30)
        # Every command topic the daemon announces to Home Assistant: these are what a user (or anyone on
        # the LAN) can write to.
        set_topics = sorted({c["command_topic"] for m in (device, mic) for c in json.loads(m.payload)["cmps"].values()
                             if "command_topic" in c and c["command_topic"].endswith("/set")})
        assert len(set_topics) >= 6, set_topics
        yield Live(daemon, sub, set_topics)
    finally:
        code = daemon.stop()
        sub.stop()
        broker.stop()
    assert code == 0


segment = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="#+/"), min_size=1,
                  max_size=12)
requests = st.sampled_from(["health", "config", "caption_now", "ask", "search", "nope", ""]).map(
    lambda c: f"{BASE}/request/{c}")
odd_sets = st.tuples(segment, segment).map(lambda p: f"{BASE}/{p[0]}/{p[1]}/set")
hostile = st.one_of(payloads, deep_json, mistyped, huge, st.just(b"[" * 1000), st.just(b"x" * 1_000_000),
                    json_values.map(lambda v: json.dumps({"camera": "porch", "question": v}).encode()),
                    json_values.map(lambda v: json.dumps({"query": v, "since": v}).encode()))


def test_the_daemon_survives_hostile_payloads_on_every_topic(live: Live) -> None:
    """Hundreds of hostile messages on every subscribed topic (the announced `/set` topics, made-up ones,
    every request, Home Assistant's status): afterwards the daemon answers, applies a valid setting,
    publishes stats, and logged no crash of any kind."""
    topics = st.one_of(st.sampled_from(live.set_topics), odd_sets, requests, st.just("homeassistant/status"))

    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)
    @given(topic=topics, payload=hostile)
    def attack(topic: str, payload: bytes) -> None:
        live.sub.publish(topic, payload)

    attack()
    assert live.daemon.proc.poll() is None
    health = live.answers_health()
    assert health["status"] == "ok"
    assert health["data"]["healthy"] is True  # type: ignore[index]
    crashes = [line for line in live.daemon.lines()
               if line.get("event") in {"mqtt_callback_failed", "mqtt_loop_crashed", "command_failed",
                                        "main_loop_step_failed", "request_failed", "non_json_line"}
               or line.get("level") in {"critical", "exception"}]
    assert crashes == []


def test_a_deep_payload_is_answered_with_an_error_and_the_next_request_too(live: Live) -> None:
    """The exact message that silenced the first release: an error answer naming the topic, then the
    daemon goes on answering and applying settings."""
    def errors() -> list[dict[str, str]]:
        return [json.loads(m.payload) for m in live.sub.on(f"{BASE}/response/health") if b"nests" in m.payload]

    seen = len(errors())
    live.sub.publish(f"{BASE}/request/health", b"[" * 1000)
    live.sub.wait_for(lambda _m: len(errors()) > seen, timeout=15)
    reply = errors()[-1]
    assert reply["status"] == "error"
    assert reply["error"] == f"{BASE}/request/health: JSON nests 1000 levels deep; the limit is 8"
    assert live.answers_health()["status"] == "ok"
    topic = f"{BASE}/porch/motion_threshold/set"
    assert topic in live.set_topics
    live.sub.publish(topic, b"137")
    live.sub.wait_topic(f"{BASE}/porch/motion_threshold/state", b"137", timeout=15)
    before = len(live.sub.on(f"{BASE}/stats"))
    live.sub.wait_for(lambda _m: len(live.sub.on(f"{BASE}/stats")) > before + 1, timeout=15)
    rejected = [line for line in live.daemon.lines() if line.get("event") == "command_rejected"]
    assert any("nests 1000 levels" in str(line.get("error")) for line in rejected)
