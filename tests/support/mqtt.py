"""A real MQTT subscriber for tests (paho), recording everything it receives."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    properties: Any = None


class Subscriber:
    """Subscribes to `topics` on the broker and keeps every message (thread-safe)."""

    def __init__(self, port: int, topics: list[str], v5: bool = True, persistent: bool = False,
                 tls: dict[str, Any] | None = None, auth: tuple[str, str] | None = None) -> None:
        """`persistent`: a non-clean MQTT 3.1.1 session, so the broker queues messages while we are away."""
        self.messages: list[Received] = []
        self._lock = threading.RLock()  # predicates passed to wait_for may call on() under the condition
        self._cond = threading.Condition(self._lock)
        proto = MQTTProtocolVersion.MQTTv311 if persistent or not v5 else MQTTProtocolVersion.MQTTv5
        extra = {"clean_session": False} if persistent else {}
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}",
                                  protocol=proto, **extra)
        self.client.reconnect_delay_set(1, 1)
        if tls:
            self.client.tls_set(**tls)
        if auth:
            self.client.username_pw_set(*auth)
        self.topics = topics
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_: (self.connected.clear(), self.subscribed.clear())
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.port = port

    def _on_connect(self, client: paho.Client, *_: Any) -> None:
        for t in self.topics:
            client.subscribe(t, qos=1)
        if not self.topics:
            self.subscribed.set()
        self.connected.set()

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain),
                                          getattr(msg, "properties", None)))
            self._cond.notify_all()

    def start(self) -> Subscriber:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        self.wait_subscribed()
        return self

    def wait_subscribed(self, timeout: float = 20.0) -> None:
        """Until (re)connected with the subscriptions acknowledged."""
        if not self.subscribed.wait(timeout):
            raise TimeoutError("subscriber could not (re)connect and subscribe")
        time.sleep(0.05)  # SUBACKs for several topics

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, topic: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    topics = sorted({m.topic for m in self.messages})
                    raise AssertionError(f"condition not met within {timeout}s; topics seen: {topics}")
                self._cond.wait(remaining)
            return list(self.messages)

    def wait_topic(self, topic: str, payload: bytes | None = None, timeout: float = 10.0) -> Received:
        def found(msgs: list[Received]) -> bool:
            return any(m.topic == topic and (payload is None or m.payload == payload) for m in msgs)

        self.wait_for(found, timeout)
        return [m for m in self.on(topic) if payload is None or m.payload == payload][-1]

    def publish(self, topic: str, payload: bytes | str, **kw: Any) -> None:
        self.client.publish(topic, payload, qos=1, **kw).wait_for_publish(5)
