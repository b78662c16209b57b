"""The MQTT link stays alive whatever its callbacks or paho do, bounds paho's queue, keeps answers for a
broker that is away, and a link that cannot be kept alive makes the daemon exit for systemd to restart.

Faults inside paho itself cannot be caused from outside, so two tests replace one of paho's packet
handlers on the live client with one that raises (said where it is done); everything else is real: a
Mosquitto on loopback, paho's network loop, the daemon's own main loop.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edged.daemon import Daemon
from edged.events import Incoming, Message
from edged.outputs.mqtt.link import MAX_QUEUED
from edged.outputs.mqtt.publisher import MqttPublisher
from tests.support.broker import Broker
from tests.support.mqtt import Subscriber
from tests.test_mqtt_publisher import make_config, started


def break_publish_handler(pub: MqttPublisher, times: int | None) -> list[int]:
    """Make paho's handler of incoming PUBLISH packets raise (the first `times` calls, or always): a stand-in
    for a bug inside paho that no payload from outside can trigger any more."""
    client: Any = pub.link._client
    real: Callable[[], Any] = client._handle_publish
    calls: list[int] = []

    def broken() -> Any:
        calls.append(1)
        if times is None or len(calls) <= times:
            raise RuntimeError("simulated fault inside paho")
        return real()

    client._handle_publish = broken
    return calls


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_callback_that_raises_does_not_stop_the_link(tmp_path: Path, broker: Broker) -> None:
    """A handler raising (here RecursionError, what `[` x 1000 once raised) is logged and counted; the
    next message is still received and publishing still works."""
    config = make_config(tmp_path, broker.port)
    seen: list[Incoming] = []

    def handler(message: Incoming) -> None:
        seen.append(message)
        if message.payload == b"boom":
            raise RecursionError("maximum recursion depth exceeded")

    pub = MqttPublisher(config, None, handler, ["edged/t1/+/+/set"])
    pub.start()
    sub = Subscriber(broker.port, ["edged/t1/#"]).start()
    try:
        assert pub.link.connected.wait(10)
        sub.wait_subscribed()
        sub.publish("edged/t1/porch/privacy/set", "boom")
        sub.publish("edged/t1/porch/privacy/set", "ON")
        wait_until(lambda: len(seen) == 2)
        assert pub.link.callback_errors == 1
        assert pub.link.alive
        pub.publish_message(Message("edged/t1/after", b"still here", qos=1))
        sub.wait_topic("edged/t1/after", b"still here")
    finally:
        sub.stop()
        pub.stop()


def test_a_crashed_network_loop_is_restarted(tmp_path: Path, broker: Broker) -> None:
    """An exception escaping paho's loop (a fault inside paho, simulated) restarts the loop: the link
    stays alive, counts the crash, and handles the next message."""
    config = make_config(tmp_path, broker.port)
    seen: list[Incoming] = []
    pub = started(config, seen)
    sub = Subscriber(broker.port, ["edged/t1/#"]).start()
    try:
        sub.wait_subscribed()
        calls = break_publish_handler(pub, times=1)
        sub.publish("edged/t1/porch/privacy/set", "first")
        wait_until(lambda: len(pub.link.loop_crashes) == 1)
        sub.publish("edged/t1/porch/privacy/set", "second")
        wait_until(lambda: any(m.payload == b"second" for m in seen))
        assert len(calls) >= 2
        assert pub.link.alive
    finally:
        sub.stop()
        pub.stop()


def test_a_link_that_keeps_crashing_makes_the_daemon_exit_non_zero(tmp_path: Path, broker: Broker) -> None:
    """When paho's loop crashes again and again the link gives up; the daemon's watchdog check sees it
    and the daemon exits with status 1 (systemd restarts it) instead of running deaf and mute."""
    config = make_config(tmp_path, broker.port, extra=", stats_interval: 1s")
    daemon = Daemon(config)
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(daemon.run()), name="test-daemon")
    runner.start()
    sub = Subscriber(broker.port, ["edged/t1/#"]).start()
    try:
        wait_until(lambda: daemon.publisher is not None and daemon.publisher.link.connected.is_set(), 20)
        assert daemon.publisher is not None
        break_publish_handler(daemon.publisher, times=None)
        sub.wait_subscribed()
        for _ in range(10):
            if not daemon.publisher.link.alive:
                break
            sub.publish("edged/t1/request/health", "{}")
            time.sleep(0.3)
        runner.join(15)
        assert result == [1]
    finally:
        daemon.stop()
        runner.join(10)
        sub.stop()


def test_answers_wait_for_a_broker_that_is_away(tmp_path: Path) -> None:
    """A command answered while the broker is down goes out after the reconnect (the first release
    dropped it). The subscriber keeps a persistent session on a broker with persistence, so it gets the
    answer whenever the two reconnect."""
    broker = Broker(tmp_path, persistence=True).start()
    config = make_config(tmp_path, broker.port)
    pub = started(config)
    sub = Subscriber(broker.port, ["edged/t1/response/#"], persistent=True).start()
    try:
        sub.wait_subscribed()
        broker.stop()
        wait_until(lambda: not pub.link.connected.is_set())
        pub.respond("edged/t1/response/ask", b'{"status":"ok","transaction":"t-9"}', None)
        assert pub.stats()["responses_waiting"] == 1
        broker.start()
        got = sub.wait_topic("edged/t1/response/ask", timeout=20)
        assert json.loads(got.payload)["transaction"] == "t-9"
        assert pub.stats()["responses_waiting"] == 0
    finally:
        sub.stop()
        pub.stop()
        broker.stop()


def test_paho_queue_is_bounded_while_the_broker_does_not_acknowledge(tmp_path: Path, broker: Broker) -> None:
    """A broker that stops reading (SIGSTOP) no longer grows paho's memory without bound: past MAX_QUEUED
    messages publish is refused and counted; after SIGCONT what was accepted is delivered."""
    config = make_config(tmp_path, broker.port)
    pub = started(config)
    assert broker.proc is not None
    sub = Subscriber(broker.port, ["edged/t1/q/#"]).start()
    try:
        sub.wait_subscribed()
        os.kill(broker.proc.pid, signal.SIGSTOP)
        payload = b"x" * 64
        accepted = sum(pub.link.publish(Message(f"edged/t1/q/{i}", payload, qos=1)) is not None
                       for i in range(MAX_QUEUED + 500))
        assert accepted == MAX_QUEUED
        assert pub.link.refused == 500
        os.kill(broker.proc.pid, signal.SIGCONT)
        sub.wait_for(lambda msgs: len({m.topic for m in msgs}) == MAX_QUEUED, timeout=30)
        assert json.loads(json.dumps(pub.stats()))["queue_refused"] == 500
    finally:
        os.kill(broker.proc.pid, signal.SIGCONT)
        sub.stop()
        pub.stop()
