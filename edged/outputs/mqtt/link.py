"""The thin shell around paho-mqtt: connection, LWT, TLS, auth, and raw publish/subscribe.

paho's network thread runs the callbacks, so they only record and hand on: `on_publish` appends the
acknowledged mid to a queue (it runs under paho's own message lock, so it must not take ours),
`on_message` passes the message to the command parser, `on_connect` subscribes, re-asserts retained
state and publishes `online` last. A refused connection leaves `connected` false.
"""

from __future__ import annotations

import contextlib
import queue
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edged.config.schema import MqttConfig
from edged.events import Incoming, Message
from edged.logs import get_logger


@dataclass
class LinkCallbacks:
    """What the link tells its owner; each runs on paho's thread and must return quickly."""

    on_connected: Callable[[], None] = lambda: None
    on_disconnected: Callable[[], None] = lambda: None
    on_message: Callable[[Incoming], None] = lambda _m: None
    on_ack: Callable[[], None] = lambda: None  # runs under paho's message lock: set an Event, nothing more
    subscriptions: Sequence[str] = field(default_factory=tuple)


_SHORT_LIVED = 5.0  # seconds; a connection dropped sooner than this counts towards "flapping"
MAX_QUEUED = 1000  # messages paho may hold (unsent or unacknowledged); past it publish() is refused, not buffered
_CRASH_WINDOW = 60.0  # seconds
_CRASHES_ALLOWED = 5  # network-loop crashes within the window before the link gives up (and edged exits)


class MqttLink:
    """One broker connection with a last will of `offline` on `<base>/available`."""

    def __init__(self, config: MqttConfig, base: str, client_id: str, password: str | None,
                 callbacks: LinkCallbacks) -> None:
        self.config = config
        self.base = base
        self.callbacks = callbacks
        self.client_id = client_id
        self.log = get_logger(component="mqtt", broker=f"{config.host}:{config.port}")
        self.connected = threading.Event()
        self.acks: queue.SimpleQueue[tuple[int, bool]] = queue.SimpleQueue()  # (mid, accepted)
        self.connects = 0
        self.disconnects = 0
        self.connected_since = 0.0  # monotonic clock of the current connection
        self._short_lived = 0  # connections in a row dropped within _SHORT_LIVED seconds
        self._stopping = False
        self.callback_errors = 0
        self.loop_crashes: list[float] = []  # monotonic times of network-loop crashes
        self.refused = 0  # publishes paho refused (its queue full)
        self._client = self._make_client(client_id, password)
        self._thread = threading.Thread(target=self._network, name="mqtt-network", daemon=True)

    def _make_client(self, client_id: str, password: str | None) -> paho.Client:
        v5 = self.config.protocol == "5"
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311)
        if self.config.username is not None:
            client.username_pw_set(self.config.username, password)
        tls = self.config.tls
        if tls is not None:
            client.tls_set(ca_certs=str(tls.ca) if tls.ca else None, certfile=str(tls.cert) if tls.cert else None,
                           keyfile=str(tls.key) if tls.key else None, cert_reqs=ssl.CERT_REQUIRED)
            client.tls_insecure_set(tls.insecure)
        client.will_set(f"{self.base}/available", "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=max(1, int(self.config.reconnect.initial)),
                                   max_delay=max(1, int(self.config.reconnect.max)))
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(MAX_QUEUED)
        # Each callback has its own guard; this is paho's, in case one is ever missed.
        client.suppress_exceptions = True
        client.on_connect = self._guarded(self._on_connect)
        client.on_disconnect = self._guarded(self._on_disconnect)
        client.on_publish = self._guarded(self._on_publish)
        client.on_message = self._guarded(self._on_message)
        return client

    def _guarded(self, callback: Callable[..., None]) -> Callable[..., None]:
        """`callback` with a last-resort guard: whatever it raises is logged and counted, and paho's network
        thread, which would otherwise die with it and leave edged deaf and mute, goes on."""
        def guarded(*args: Any) -> None:
            try:
                callback(*args)
            except Exception as exc:
                self.callback_errors += 1
                self.log.exception("mqtt_callback_failed", callback=callback.__name__, error=str(exc)[:200])
        return guarded

    def start(self) -> None:
        """Connect in the background; paho retries with back-off while the broker is away."""
        self.log.info("mqtt_connecting", client_id=self.client_id, tls=self.config.tls is not None)
        self._client.connect_async(self.config.host, self.config.port, keepalive=int(self.config.keepalive))
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the network loop runs: without it nothing is received or sent (the watchdog checks this)."""
        return self._thread.is_alive()

    def _network(self) -> None:
        """paho's network loop, restarted when it crashes; after too many crashes in a row the thread ends,
        `alive` turns false and the daemon exits so that systemd restarts it."""
        while not self._stopping:
            try:
                self._client.loop_forever(retry_first_connection=True)
            except Exception as exc:
                now = time.monotonic()
                self.loop_crashes = [t for t in self.loop_crashes if now - t < _CRASH_WINDOW] + [now]
                if len(self.loop_crashes) > _CRASHES_ALLOWED:
                    self.log.critical("mqtt_loop_dead", crashes=len(self.loop_crashes), error=str(exc)[:200])
                    return
                self.log.exception("mqtt_loop_crashed", error=str(exc)[:200], restarting=True)
                time.sleep(min(1.0, 0.1 * len(self.loop_crashes)))
            else:
                if not self._stopping:  # returned without our disconnect(): connect again from scratch
                    self._client.connect_async(self.config.host, self.config.port,
                                               keepalive=int(self.config.keepalive))
                    time.sleep(1.0)

    def stop(self, timeout: float = 2.0) -> None:
        """Say `offline` (a clean disconnect doesn't fire the will), then disconnect."""
        self._stopping = True
        if self.connected.is_set():
            info = self._client.publish(f"{self.base}/available", "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # not sent in time: the will covers us
                info.wait_for_publish(timeout)
        self._client.disconnect()  # ends loop_forever, also while it waits to reconnect
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.connected.clear()

    def publish(self, message: Message) -> int | None:
        """Hand a message to paho; returns its mid, or None when not connected or refused."""
        if not self.connected.is_set():
            return None
        props = None
        if message.correlation is not None and self.config.protocol == "5":
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.CorrelationData = message.correlation
        info = self._client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain,
                                    properties=props)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            self.refused += 1
            if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
                self.log.warning("mqtt_queue_full", refused=self.refused, limit=MAX_QUEUED, topic=message.topic)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return None
        return int(info.mid)

    # -- paho callbacks (network thread) -----------------------------------------------------------
    def _on_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode,
                    _props: Properties | None) -> None:
        if reason.is_failure:
            self.log.error("mqtt_connect_refused", reason=str(reason))
            return
        self.connects += 1
        self.connected_since = time.monotonic()
        for topic in self.callbacks.subscriptions:
            client.subscribe(topic, qos=1)
        self.connected.set()
        self.log.info("mqtt_connected", connects=self.connects)
        self.callbacks.on_connected()
        client.publish(f"{self.base}/available", "online", qos=1, retain=True)  # last, on every connect

    def _on_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode,
                       _props: Properties | None) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if was:
            self.disconnects += 1
            (self.log.info if self._stopping else self.log.warning)("mqtt_disconnected", reason=str(reason))
            self._note_flapping()
            self.callbacks.on_disconnected()

    def _note_flapping(self) -> None:
        """Say once per streak what usually drops connections right after they are made: a second client
        with the same id (a copied config, two daemons with one device id), which the broker lets in by
        closing ours. Mosquitto closes the socket without a reason code, so this is a hint, not a finding."""
        short = time.monotonic() - self.connected_since < _SHORT_LIVED
        self._short_lived = self._short_lived + 1 if short else 0
        if self._short_lived == 3 and not self._stopping:
            self.log.warning("mqtt_connection_flapping", client_id=self.client_id,
                             hint="connections drop within seconds: most often another client uses the same "
                                  "client id (give each edged its own device.id or mqtt.client_id), else the "
                                  "broker keeps restarting")

    def _on_publish(self, _client: paho.Client, _userdata: Any, mid: int, reason: ReasonCode,
                    _props: Properties | None) -> None:
        self.acks.put((mid, not reason.is_failure))
        self.callbacks.on_ack()

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        response_topic = getattr(props, "ResponseTopic", None) if props is not None else None
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        self.callbacks.on_message(Incoming(msg.topic, bytes(msg.payload), response_topic, correlation))
