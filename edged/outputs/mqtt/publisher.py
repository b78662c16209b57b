"""`MqttPublisher`: the one place events leave edged.

- durable events (keywords, camera events, captions) are committed to the outbox, then sent in order
  by the sender thread while the broker is connected, and deleted on PUBACK;
- retained state (availability, status, motion, caption, snapshot, `/state`, discovery configs) is
  kept in a cache, published when connected and re-asserted on every reconnect;
- everything else (stats) is sent with QoS 0 when connected and otherwise skipped.

`publish()` never blocks on the network and never raises for a broker outage.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any

from edged.config.schema import Config
from edged.events import Event, Incoming, Message
from edged.logs import get_logger
from edged.metrics import Percentiles
from edged.outputs.mqtt.link import LinkCallbacks, MqttLink
from edged.outputs.mqtt.outbox import Outbox, Pending

_LATE_AFTER = 5.0  # seconds in the outbox after which a message counts as delivered late anyway
_WINDOW = 64  # outbox messages handed to paho but not yet acknowledged
_RESPONSES_KEPT = 256  # command responses held while the broker is away (the oldest go first)


def mark_replayed(message: Message) -> Message:
    """The message with `"replayed": true` added to its JSON object payload."""
    try:
        data = json.loads(message.payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return message
    if not isinstance(data, dict):
        return message
    data["replayed"] = True
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return Message(message.topic, payload, message.qos, message.retain, message.durable)


class RetainedState:
    """The latest retained message per topic, in first-published order."""

    def __init__(self) -> None:
        self._messages: OrderedDict[str, Message] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, message: Message) -> bool:
        """Remember `message`; False when the topic already holds exactly this payload."""
        with self._lock:
            old = self._messages.get(message.topic)
            self._messages[message.topic] = message
            return old is None or old.payload != message.payload

    def all(self, prefix: str = "") -> list[Message]:
        with self._lock:
            return [m for t, m in self._messages.items() if t.startswith(prefix)]

    def get(self, topic: str) -> Message | None:
        with self._lock:
            return self._messages.get(topic)


class OutboxSender:
    """Moves committed messages from the outbox to the broker, in order, and deletes them on PUBACK."""

    def __init__(self, outbox: Outbox, link: MqttLink) -> None:
        self.outbox = outbox
        self.link = link
        self.log = get_logger(component="outbox")
        self.latency_ms = Percentiles()
        self.sent = 0
        self.replayed = 0
        self.rejected = 0
        self._inflight: dict[int, Pending] = {}
        self._cursor = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mqtt-outbox", daemon=True)
        self._last_maintenance = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def on_disconnected(self) -> None:
        """paho keeps and resends what it holds; nothing to undo here."""

    def idle(self) -> bool:
        """True when nothing waits in the outbox or for a PUBACK."""
        return not self._inflight and len(self.outbox) == 0

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._drain_acks()
                if self.link.connected.is_set():
                    self._hand_on()
                self._maintain()
            except Exception as exc:  # never let the sender die: log and keep going
                self.log.exception("outbox_sender_error", error=str(exc))
                self._stop.wait(1.0)
            self._wake.wait(0.05)
            self._wake.clear()
        self._drain_acks()

    def _hand_on(self) -> None:
        room = _WINDOW - len(self._inflight)
        if room <= 0:
            return
        for pending in self.outbox.fetch_after(self._cursor, room):
            message = pending.message
            # Late: it waited for this connection (an outage, a restart), or the outbox was slow.
            late = pending.committed_before(self.link.connected_since) or pending.age() > _LATE_AFTER
            if late:
                message = mark_replayed(message)
            mid = self.link.publish(message)
            if mid is None:
                return  # disconnected meanwhile: the same rows are fetched again later
            self._inflight[mid] = pending
            self._cursor = pending.id
            self.replayed += int(late)

    def _drain_acks(self) -> None:
        done: list[int] = []
        while not self.link.acks.empty():
            mid, accepted = self.link.acks.get_nowait()
            pending = self._inflight.pop(mid, None)
            if pending is None:
                continue  # a retained or response publish, not ours
            if not accepted:
                self.rejected += 1
                self.log.error("mqtt_publish_rejected", topic=pending.message.topic)
            self.sent += 1
            self.latency_ms.add(pending.age() * 1000)
            done.append(pending.id)
        self.outbox.ack(done)

    def _maintain(self) -> None:
        now = time.monotonic()
        if now - self._last_maintenance < 5.0:
            return
        self._last_maintenance = now
        if self.outbox.flush_memory():
            self.log.info("outbox_disk_recovered", pending=len(self.outbox))
        expired = self.outbox.expire()
        if expired:
            self.log.warning("outbox_expired", count=expired, ttl_s=self.outbox.ttl)


class MqttPublisher:
    """Publishes events through the outbox, the retained-state cache, or directly (see module doc)."""

    def __init__(
        self,
        config: Config,
        password: str | None,
        on_command: Callable[[Incoming], None],
        subscriptions: Sequence[str],
        on_connected: Callable[[], None] = lambda: None,
    ) -> None:
        self.base = config.base_topic
        self.log = get_logger(component="mqtt")
        mqtt = config.mqtt
        self.outbox = Outbox(config.outbox_path, mqtt.outbox.max_events, mqtt.outbox.ttl)
        self.retained = RetainedState()
        self._on_connected_hook = on_connected
        callbacks = LinkCallbacks(on_connected=self._on_connected, on_disconnected=self._on_disconnected,
                                  on_message=on_command, on_ack=lambda: self.sender.wake(),  # noqa: PLW0108 - sender comes next
                                  subscriptions=tuple(subscriptions))
        self.link = MqttLink(mqtt, self.base, config.client_id, password, callbacks)
        self.sender = OutboxSender(self.outbox, self.link)
        self.skipped_offline = 0
        # Responses wait here (in memory: a requester does not outlive a restart) while the broker is away.
        self._responses: deque[Message] = deque(maxlen=_RESPONSES_KEPT)
        self._responses_lock = threading.Lock()
        self.responses_dropped = 0
        self._started = False

    def start(self) -> None:
        backlog = len(self.outbox)
        if backlog:
            self.log.info("outbox_backlog", pending=backlog, path=str(self.outbox.path))
        self.sender.start()
        self.link.start()
        self._started = True

    def publish(self, event: Event) -> None:
        self.publish_message(event.to_message(self.base))

    def publish_message(self, message: Message, force: bool = False) -> None:
        """Send `message` by its delivery class; `force` re-sends retained state even when unchanged."""
        if message.durable:
            self.outbox.add(message)
            self.sender.wake()
            if message.retain:
                self.retained.put(message)
            return
        if message.retain:
            if self.retained.put(message) or force:
                self.link.publish(message)
            return
        if self.link.publish(message) is None:
            self.skipped_offline += 1

    def respond(self, topic: str, payload: bytes, correlation: bytes | None) -> None:
        """Answer a command; while the broker is away the answer waits and goes out on reconnect."""
        message = Message(topic, payload, qos=1, correlation=correlation)
        if self.link.publish(message) is not None:
            return
        with self._responses_lock:
            if len(self._responses) == self._responses.maxlen:
                self.responses_dropped += 1
                self.log.warning("response_dropped", topic=self._responses[0].topic, kept=_RESPONSES_KEPT)
            self._responses.append(message)
        if self.link.connected.is_set():  # connected meanwhile, after _on_connected looked at the queue
            self._send_waiting_responses()

    def _send_waiting_responses(self) -> None:
        with self._responses_lock:
            while self._responses:
                if self.link.publish(self._responses[0]) is None:
                    return  # gone again: the rest wait for the next connection
                self._responses.popleft()

    def reassert(self, prefix: str = "") -> None:
        """Publish every cached retained message again (after a reconnect or a Home Assistant restart)."""
        for message in self.retained.all(prefix):
            if not message.durable:  # durable retained ones are re-sent from the outbox or stand on the broker
                self.link.publish(message)
            else:
                self.link.publish(Message(message.topic, message.payload, message.qos, True, False))

    def _on_connected(self) -> None:
        self._on_connected_hook()
        self.reassert()
        self._send_waiting_responses()
        self.sender.wake()

    def _on_disconnected(self) -> None:
        self.sender.on_disconnected()

    def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty and acknowledged, up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sender.idle() or not self.link.connected.is_set():
                return self.sender.idle()
            self.sender.wake()
            time.sleep(0.02)
        return self.sender.idle()

    def stop(self, flush_timeout: float = 2.0) -> None:
        if not self._started:
            self.outbox.close()
            return
        flushed = self.flush(flush_timeout)
        pending = len(self.outbox)
        self.link.stop()
        self.sender.stop()
        self.outbox.close()
        self.log.info("mqtt_stopped", flushed=flushed, pending_kept=pending)

    def stats(self) -> dict[str, Any]:
        return {
            "connected": self.link.connected.is_set(), "connects": self.link.connects,
            "disconnects": self.link.disconnects, "outbox_pending": len(self.outbox),
            "outbox_evicted": self.outbox.evicted, "outbox_expired": self.outbox.expired,
            "outbox_disk_errors": self.outbox.disk_errors, "sent": self.sender.sent,
            "replayed": self.sender.replayed, "rejected": self.sender.rejected,
            "skipped_offline": self.skipped_offline, "responses_waiting": len(self._responses),
            "responses_dropped": self.responses_dropped, "link_alive": self.link.alive,
            "callback_errors": self.link.callback_errors, "queue_refused": self.link.refused,
            "puback_latency_ms": self.sender.latency_ms.summary(),
        }
