"""Publishing to a real Mosquitto: LWT, online-last, retained state re-asserted, events through the outbox."""

from __future__ import annotations

import json
import time
from pathlib import Path

from edged.config import parse_config
from edged.config.schema import Config
from edged.events import Availability, CameraEvent, Incoming, MotionState, SourceStatus, Stats
from edged.outputs.mqtt.publisher import MqttPublisher
from tests.support.broker import Broker
from tests.support.mqtt import Subscriber


def make_config(tmp_path: Path, port: int, extra: str = "") -> Config:
    return parse_config(
        f"device: {{id: t1}}\nstate_dir: {tmp_path / 'state'}\n"
        f"mqtt: {{port: {port}, reconnect: {{initial: 1s, max: 1s}}{extra}}}\n"
        "cameras:\n  porch: {url: a.mp4}\n")


def started(config: Config, incoming: list[Incoming] | None = None) -> MqttPublisher:
    sink = incoming if incoming is not None else []
    pub = MqttPublisher(config, None, sink.append, [f"{config.base_topic}/+/+/set"])
    pub.start()
    assert pub.link.connected.wait(10)
    return pub


def test_online_is_retained_and_the_will_says_offline(tmp_path: Path, broker: Broker) -> None:
    """`available` is `online` (retained) while up; a killed daemon leaves `offline` via the LWT."""
    config = make_config(tmp_path, broker.port)
    pub = started(config)
    sub = Subscriber(broker.port, ["edged/t1/#"]).start()
    try:
        sub.wait_topic("edged/t1/available", b"online")
        # Retained, as a newcomer sees it (`sub` may have subscribed before `online` went out, and a live
        # delivery never carries the retain flag).
        late = Subscriber(broker.port, ["edged/t1/available"]).start()
        try:
            assert late.wait_topic("edged/t1/available", b"online").retain
        finally:
            late.stop()
        # Simulate a crash: end the network loop for good and drop the socket without DISCONNECT, so the
        # broker fires the will.
        pub.link._stopping = True
        pub.link._client._thread_terminate = True  # type: ignore[attr-defined]
        pub.link._client._sock_close()  # type: ignore[attr-defined]
        sub.wait_topic("edged/t1/available", b"offline", timeout=90)
    finally:
        sub.stop()
        pub.sender.stop()
        pub.outbox.close()


def test_retained_state_and_events_reach_the_broker(tmp_path: Path, broker: Broker) -> None:
    """Motion state is retained; a camera event is delivered (QoS 1) and leaves the outbox on PUBACK."""
    config = make_config(tmp_path, broker.port)
    pub = started(config)
    sub = Subscriber(broker.port, ["edged/t1/#"]).start()
    try:
        pub.publish(MotionState("porch", True))
        pub.publish(CameraEvent("new", "ev-1", "porch", "motion", time.time()))
        sub.wait_topic("edged/t1/porch/motion", b"ON")
        event = json.loads(sub.wait_topic("edged/t1/events").payload)
        assert (event["type"], event["id"], event["camera"]) == ("new", "ev-1", "porch")
        assert pub.flush(5)
        assert len(pub.outbox) == 0
        assert pub.stats()["sent"] == 1
    finally:
        sub.stop()
        pub.stop()
    late = Subscriber(broker.port, ["edged/t1/porch/motion"]).start()  # a newcomer sees retained state
    try:
        assert late.wait_topic("edged/t1/porch/motion", b"ON").retain
    finally:
        late.stop()


def test_state_is_reasserted_and_online_comes_last_after_a_broker_restart(tmp_path: Path, broker: Broker) -> None:
    """After the broker restarts (losing its retained store), state comes back, then `online`."""
    config = make_config(tmp_path, broker.port)
    pub = started(config)
    try:
        pub.publish(SourceStatus("porch", "online"))
        pub.publish(MotionState("porch", False))
        assert pub.flush(5)
        broker.stop()
        deadline = time.monotonic() + 10
        while pub.link.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        broker.start()
        sub = Subscriber(broker.port, ["edged/t1/#"]).start()
        try:
            sub.wait_topic("edged/t1/available", b"online", timeout=30)
            sub.wait_topic("edged/t1/porch/status", b"online")
            sub.wait_topic("edged/t1/porch/motion", b"OFF")
            assert pub.link.connects >= 2
        finally:
            sub.stop()
    finally:
        pub.stop()


def test_events_published_during_an_outage_arrive_marked_replayed(tmp_path: Path, broker: Broker) -> None:
    """Events wait in the outbox while the broker is down and arrive afterwards with `replayed: true`."""
    config = make_config(tmp_path, broker.port)
    pub = started(config)
    try:
        broker.stop()
        deadline = time.monotonic() + 10
        while pub.link.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        for i in range(20):
            pub.publish(CameraEvent("new", f"ev-{i}", "porch", "motion", time.time()))
        assert len(pub.outbox) == 20
        time.sleep(1.2)
        broker.start()
        sub = Subscriber(broker.port, ["edged/t1/events"]).start()
        try:
            msgs = sub.wait_for(lambda m: len({json.loads(x.payload)["id"] for x in m}) == 20, timeout=30)
            payloads = [json.loads(m.payload) for m in msgs]
            assert all(p["replayed"] is True for p in payloads)
            ids = [p["id"] for p in payloads]
            assert ids[:20] == [f"ev-{i}" for i in range(20)]  # in order
        finally:
            sub.stop()
    finally:
        pub.stop()


def test_qos0_stats_are_skipped_while_offline(tmp_path: Path) -> None:
    """No broker at all: publishing never blocks or raises; stats are counted as skipped."""
    config = make_config(tmp_path, 9)  # nothing listens on port 9
    pub = MqttPublisher(config, None, lambda m: None, [])
    pub.start()
    try:
        started_at = time.monotonic()
        pub.publish(Stats(time.time(), 1.0, {}))
        pub.publish(Availability(True))
        pub.publish(CameraEvent("new", "x", "porch", "motion", time.time()))
        assert time.monotonic() - started_at < 0.5
        assert pub.stats()["skipped_offline"] == 1
        assert len(pub.outbox) == 1
    finally:
        pub.stop(flush_timeout=0.1)


def test_set_commands_reach_the_handler(tmp_path: Path, broker: Broker) -> None:
    """Messages on subscribed command topics come to `on_command` with their payload."""
    config = make_config(tmp_path, broker.port)
    incoming: list[Incoming] = []
    pub = started(config, incoming)
    sub = Subscriber(broker.port, []).start()
    try:
        sub.publish("edged/t1/porch/motion/set", "OFF")
        deadline = time.monotonic() + 5
        while not incoming and time.monotonic() < deadline:
            time.sleep(0.02)
        assert incoming[0].topic == "edged/t1/porch/motion/set"
        assert incoming[0].payload == b"OFF"
    finally:
        sub.stop()
        pub.stop()


def test_a_second_client_with_our_id_is_named_as_the_likely_cause(tmp_path: Path, broker: Broker) -> None:
    """Two clients with one id kick each other off the broker; edged says so once, with the fix."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from structlog.testing import capture_logs

    config = make_config(tmp_path, broker.port)
    with capture_logs() as logs:
        pub = started(config)
        twin = paho.Client(CallbackAPIVersion.VERSION2, client_id=config.client_id)  # same id: edged-t1
        twin.reconnect_delay_set(1, 1)
        twin.connect_async("127.0.0.1", broker.port)
        twin.loop_start()
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(e["event"] == "mqtt_connection_flapping" for e in logs):
                time.sleep(0.2)
        finally:
            twin.disconnect()
            twin.loop_stop()
            pub.stop()
    flapping = [e for e in logs if e["event"] == "mqtt_connection_flapping"]
    assert len(flapping) == 1, [e["event"] for e in logs]
    assert flapping[0]["client_id"] == "edged-t1"
    assert "same client id" in flapping[0]["hint"]
