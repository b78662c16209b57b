"""Every message edged publishes: one frozen dataclass each, with pure payload functions.

`event.to_message(base)` gives the MQTT topic, payload bytes, QoS and retain flag;
`Cls.from_message(base, topic, payload)` parses it back. The MQTT shell only moves `Message`s.
Three delivery properties decide the path a message takes:

- `durable`: committed to the outbox and kept until the broker acknowledges it (events, captions);
- `retain`: published retained and re-asserted from the state cache on every reconnect;
- `qos`: 1 for events and state, 0 for stats.

The contract (topics and payloads) is DESIGN.md section 3; `tests/test_events.py` round-trips every
class defined here, so a new event cannot ship without an example.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

E = TypeVar("E", bound="Event")

SourceStatusValue = Literal["online", "offline", "disabled"]
TITLE_LIMIT = 255  # Home Assistant's state length limit


class TriggerKind(str, enum.Enum):
    """Why a camera gets looked at: the one list of trigger kinds that the config, the scheduler and the
    published events share. `priority`: a higher one runs first and preempts a lower one between tokens."""

    ASK = "ask"  # a question about a camera (MQTT `ask`): answered to the caller
    REQUEST = "request"  # a caption asked for (MQTT `caption_now`, the Home Assistant button): answered
    KEYWORD = "keyword"  # a keyword heard by the camera's microphone
    MOTION = "motion"  # motion started
    PERIODIC = "periodic"  # the adaptive periodic caption
    WATCH = "watch"  # a camera's standing yes/no questions (`watches:`) came due: answered, not captioned

    def __str__(self) -> str:  # the value, as in payloads and logs (not `TriggerKind.ASK`)
        return self.value

    @property
    def priority(self) -> int:
        return _PRIORITY[self]

    @property
    def answered(self) -> bool:
        """Someone waits for this trigger's result on a response topic."""
        return self in (TriggerKind.ASK, TriggerKind.REQUEST)

    @property
    def admitted_by(self) -> TriggerKind:
        """The kind a camera's `captions.on` must list for this one: a question is a request."""
        return TriggerKind.REQUEST if self is TriggerKind.ASK else self


# A watch ranks with motion: the least recently served camera goes first among equals, so watches and
# motion captions of different cameras take turns (see edged.scheduling.policy for how a waiting watch ages).
_PRIORITY = {TriggerKind.ASK: 4, TriggerKind.REQUEST: 4, TriggerKind.KEYWORD: 3, TriggerKind.MOTION: 2,
             TriggerKind.WATCH: 2, TriggerKind.PERIODIC: 1}


class PayloadError(ValueError):
    """A payload does not fit its message type; the text names the topic and what is wrong."""


@dataclass(frozen=True)
class Message:
    """One MQTT message, ready for the wire."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    durable: bool = False
    correlation: bytes | None = None  # MQTT 5 correlation data (command responses)


@dataclass(frozen=True)
class Incoming:
    """An MQTT message received on a subscribed topic, with its MQTT 5 request/response properties."""

    topic: str
    payload: bytes
    response_topic: str | None = None
    correlation: bytes | None = None


class Event:
    """Base of every published message type."""

    durable: ClassVar[bool] = False
    retain: ClassVar[bool] = False
    qos: ClassVar[int] = 1

    def topic(self, base: str) -> str:
        raise NotImplementedError

    def to_payload(self) -> dict[str, Any] | str | bytes:
        raise NotImplementedError

    def to_message(self, base: str) -> Message:
        payload = self.to_payload()
        if isinstance(payload, dict):
            data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        elif isinstance(payload, str):
            data = payload.encode()
        else:
            data = payload
        return Message(self.topic(base), data, self.qos, self.retain, self.durable)

    @classmethod
    def from_message(cls: type[E], base: str, topic: str, payload: bytes) -> E:
        raise NotImplementedError


def _suffix(base: str, topic: str, tail: str) -> str:
    """The `<id>` of `<base>/<id>/<tail>`; raises `PayloadError` for another topic."""
    prefix = base + "/"
    end = "/" + tail
    if not (topic.startswith(prefix) and topic.endswith(end)) or len(topic) <= len(prefix) + len(end):
        raise PayloadError(f"{topic}: not a {base}/<id>/{tail} topic")
    return topic[len(prefix):-len(end)]


def _json(topic: str, payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"{topic}: payload is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PayloadError(f"{topic}: payload must be a JSON object")
    data.pop("replayed", None)  # added by the outbox when a message is delivered late
    return data


def _text(topic: str, payload: bytes, allowed: tuple[str, ...]) -> str:
    text = payload.decode(errors="replace")
    if text not in allowed:
        raise PayloadError(f"{topic}: payload must be one of {', '.join(allowed)} (got {text[:40]!r})")
    return text


@dataclass(frozen=True)
class Availability(Event):
    """`<base>/available`: the daemon is up. The broker publishes `offline` for us (LWT)."""

    online: bool
    retain: ClassVar[bool] = True

    def topic(self, base: str) -> str:
        return f"{base}/available"

    def to_payload(self) -> str:
        return "online" if self.online else "offline"

    @classmethod
    def from_message(cls, base: str, topic: str, payload: bytes) -> Availability:
        if topic != f"{base}/available":
            raise PayloadError(f"{topic}: not {base}/available")
        return cls(_text(topic, payload, ("online", "offline")) == "online")


@dataclass(frozen=True)
class SourceStatus(Event):
    """`<base>/<source>/status`: online / offline / disabled, what Home Assistant availability reads."""

    source: str
    status: SourceStatusValue
    retain: ClassVar[bool] = True

    def topic(self, base: str) -> str:
        return f"{base}/{self.source}/status"

    def to_payload(self) -> str:
        return self.status

    @classmethod
    def from_message(cls, base: str, topic: str, payload: bytes) -> SourceStatus:
        status = _text(topic, payload, ("online", "offline", "disabled"))
        return cls(_suffix(base, topic, "status"), status)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SourceHealth(Event):
    """`<base>/<source>/health`: what a source is doing and why (JSON, retained)."""

    source: str
    kind: Literal["camera", "microphone"]
    state: str  # a SourceState value: starting, streaming, reconnecting, stalled, ended, disabled, privacy
    reason: str
    since: float  # wall-clock time the state began
    reconnects: int = 0
    stalls: int = 0
    retain: ClassVar[bool] = True

    def topic(self, base: str) -> str:
        return f"{base}/{self.source}/health"

    def to_payload(self) -> dict[str, Any]:
        return {"source": self.source, "kind": self.kind, "state": self.state, "reason": self.reason,
                "since": self.since, "reconnects": self.reconnects, "stalls": self.stalls}

    @classmethod
    def from_message(cls, base: str, topic: str, payload: bytes) -> SourceHealth:
        d = _json(topic, payload)
        return cls(d["source"], d["kind"], d["state"], d["reason"], float(d["since"]),
                   int(d["reconnects"]), int(d["stalls"]))


@dataclass(frozen=True)
class MotionState(Event):
    """`<base>/<camera>/motion`: ON while there is motion (OFF after the off-delay)."""

    camera: str
    active: bool
    retain: ClassVar[bool] = True

    def topic(self, base: str) -> str:
        return f"{base}/{self.camera}/motion"

    def to_payload(self) -> str:
        return "ON" if self.active else "OFF"

    @classmethod
    def from_message(cls, base: str, topic: str, payload: bytes) -> MotionState:
        return cls(_suffix(base, topic, "motion"), _text(topic, payload, ("ON", "OFF")) == "ON")


@dataclass(frozen=True)
class KeywordDetected(Event):
    """`<base>/<mic>/keyword`: a keyword was heard (Home Assistant `event` entity).

    `trace` holds the keyword's smoothed score before the hit, one value every `trace_step` seconds
    ending at the detection (the last value is `score`), so a user can see why it fired; `backend`
    names the model family that heard it.
    """

    id: str
    mic: str
    keyword: str
    score: float
    ts: float  # wall clock
    stream_time: float  # seconds of audio consumed when it fired
    camera: str | None = None
    cutoff: float = 0.0
    trace: tuple[float, ...] = ()
    trace_step: float = 0.0
    backend: str = ""
    durable: ClassVar[bool] = True

    def topic(self, base: str) -> str:
        return f"{base}/{self.mic}/keyword"

    def to_payload(self) -> dict[str, Any]:
        return {"event_type": self.keyword, "id": self.id, "mic": self.mic, "score": round(self.score, 4),
                "ts": self.ts, "stream_time": round(self.stream_time, 3), "camera": self.camera,
                "cutoff": self.cutoff, "trace": [round(v, 4) for v in self.trace],
                "trace_step": self.trace_step, "backend": self.backend}

    @classmethod
    def from_message(cls, base: str, topic: str, payload: bytes) -> KeywordDetected:
        d = _json(topic, payload)
        return cls(d["id"], _suffix(base, topic, "keyword"), d["event_type"], float(d["score"]), float(d["ts"]),
                   float(d["stream_time"]), d.get("camera"), float(d.get("cutoff", 0.0)),
                   tuple(float(v) for v in d.get("trace", ())), float(d.get("trace_step", 0.0)),
                   str(d.get("backend", "")))


@dataclass(frozen=True)
class CameraEvent(Event):
    """`<base>/events`: the life of one event: `new` at the trigger, `update`s (caption), `end`."""

    type: Literal["new", "update", "end"]
    id: str
    camera: str
    trigger: TriggerKind
    start_ts: float
    ts: float = field(default_factory=time.time)
    end_ts: float | None = None
    title: str = ""
    caption: str = ""
    labels: tuple[str, ...] = ()
    motion_area: float = 0.0
    keyword: str | None = None
    has_snapshot: bool = False
    rules: tuple[str, ...] = ()
    watch: str | None = None  # a watch's event (trigger `watch`): open while the watch is ON
    durable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "trigger", TriggerKind(self.trigger))  # a kind's name is taken too

    def topic(self, base: str) -> str:
        return f"{base}/events"

    def to_payload(self) -> dict[str, Any]:
        data = {"type": self.type, "id": self.id, "camera": self.camera, "trigger": self.trigger.value,
                "start_ts": self.start_ts, "ts": self.ts, "end_ts": self.end_ts, "title": self.title,
                "caption": self.caption, "labels": list(self.labels), "motion_area": round(self.motion_area, 4),
                "keyword": self.keyword, "has_snapshot": self.has_snapshot, "rules": list(self.rules)}
        if self.watch is not None:
            data["watch"] = self.watch
        return data

    @classmethod
    def from_message(cls, base: str, topic: str, payload: bytes) -> CameraEvent:
        if topic != f"{base}/events":
            raise PayloadError(f"{topic}: not {base}/events")
        d = _json(topic, payload)
        return cls(d["type"], d["id"], d["camera"], TriggerKind(d["trigger"]), float(d["start_ts"]),
                   float(d["ts"]),
                   d.get("end_ts"), d.get("title", ""), d.get("caption", ""), tuple(d.get("labels", ())),
                   float(d.get("motion_area", 0.0)), d.get("keyword"), bool(d.get("has_snapshot", False)),
                   tuple(d.get("rules", ())), d.get("watch"))


@dataclass(frozen=True)
class Caption(Event):
    """`<base>/<camera>/caption`: the latest caption (retained state, and never lost)."""

    id: str
    camera: str
    title: str
    caption: str
    trigger: TriggerKind
    frame_ts: float
    published_ts: float
    latency_ms: float
    model: str
    labels: tuple[str, ...] = ()
    question: str = ""
    tokens: int = 0
    # A structured caption (`captions.summary: structured`), Frigate's review-summary fields: `title` is the
    # model's title, `summary` (also in `caption`) its summary, `threat_level` 0 normal, 1 suspicious,
    # 2 threat (None: the model gave none). Plain captions have neither key in their payload.
    summary: str = ""
    threat_level: int | None = None
    durable: ClassVar[bool] = True
    retain: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "trigger", TriggerKind(self.trigger))  # a kind's name is taken too
        if len(self.title) > TITLE_LIMIT:
            raise ValueError(f"caption title is {len(self.title)} characters; Home Assistant takes {TITLE_LIMIT}")
        if self.threat_level is not None and self.threat_level not in (0, 1, 2):
            raise ValueError(f"threat_level must be 0, 1 or 2 (got {self.threat_level})")

    def topic(self, base: str) -> str:
        return f"{base}/{self.camera}/caption"

    def to_payload(self) -> dict[str, Any]:
        return {"id": self.id, "camera": self.camera, "title": self.title, "caption": self.caption,
                "labels": list(self.labels), "trigger": self.trigger.value, "frame_ts": self.frame_ts,
                "published_ts": self.published_ts, "latency_ms": round(self.latency_ms, 1), "model": self.model,
                "question": self.question, "tokens": self.tokens,
                **({"summary": self.summary, "threat_level": self.threat_level} if self.summary else {})}

    @classmethod
    def from_message(cls, base: str, topic: str, payload: bytes) -> Caption:
        d = _json(topic, payload)
        threat = d.get("threat_level")
        return cls(d["id"], _suffix(base, topic, "caption"), d["title"], d["caption"], TriggerKind(d["trigger"]),
                   float(d["frame_ts"]), float(d["published_ts"]), float(d["latency_ms"]), d["model"],
                   tuple(d.get("labels", ())), d.get("question", ""), int(d.get("tokens", 0)),
                   str(d.get("summary", "")), None if threat is None else int(threat))


@dataclass(frozen=True)
class CaptionUnchanged(Event):
    """`<base>/<camera>/caption/unchanged`: the scene still matches caption `id` (a heartbeat)."""

    camera: str
    id: str
    unchanged_since: float
    ts: float
    reason: Literal["scene", "text"] = "scene"

    def topic(self, base: str) -> str:
        return f"{base}/{self.camera}/caption/unchanged"

    def to_payload(self) -> dict[str, Any]:
        return {"id": self.id, "unchanged_since": self.unchanged_since, "ts": self.ts, "reason": self.reason}

    @classmethod
    def from_message(cls, base: str, topic: str, payload: bytes) -> CaptionUnchanged:
        d = _json(topic, payload)
        return cls(_suffix(base, topic, "caption/unchanged"), d["id"], float(d["unchanged_since"]),
                   float(d["ts"]), d.get("reason", "scene"))


@dataclass(frozen=True, eq=False)
class Snapshot(Event):
    """`<base>/<camera>/snapshot`: JPEG of the frame the latest event or caption is about."""

    camera: str
    jpeg: bytes
    retain: ClassVar[bool] = True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and (self.camera, self.jpeg) == (other.camera, other.jpeg)

    def __hash__(self) -> int:
        return hash((self.camera, len(self.jpeg)))

    def topic(self, base: str) -> str:
        return f"{base}/{self.camera}/snapshot"

    def to_payload(self) -> bytes:
        return self.jpeg

    @classmethod
    def from_message(cls, base: str, topic: str, payload: bytes) -> Snapshot:
        if not payload.startswith(b"\xff\xd8"):
            raise PayloadError(f"{topic}: payload is not a JPEG image")
        return cls(_suffix(base, topic, "snapshot"), payload)


@dataclass(frozen=True)
class WatchState(Event):
    """`<base>/<camera>/watch/<name>`: a watch's debounced answer, ON (yes) or OFF (no); retained, never lost."""

    camera: str
    watch: str
    on: bool
    durable: ClassVar[bool] = True
    retain: ClassVar[bool] = True

    def topic(self, base: str) -> str:
        return f"{base}/{self.camera}/watch/{self.watch}"

    def to_payload(self) -> str:
        return "ON" if self.on else "OFF"

    @classmethod
    def from_message(cls, base: str, topic: str, payload: bytes) -> WatchState:
        camera, watch = _watch_topic(base, topic, "")
        return cls(camera, watch, _text(topic, payload, ("ON", "OFF")) == "ON")


@dataclass(frozen=True)
class WatchAttributes(Event):
    """`<base>/<camera>/watch/<name>/attributes`: the latest answer behind a watch (JSON, retained; Home
    Assistant's binary_sensor attributes). `p_yes` and `frame_ts` are of the latest answer, `since` is when
    the state last changed, `snapshot` the topic holding the frame that decided it."""

    camera: str
    watch: str
    state: bool | None  # None: not decided yet
    question: str
    p_yes: float
    frame_ts: float  # wall clock of the frame the latest answer is about
    since: float | None  # wall clock of the last state change
    model: str = ""
    run: int = 0  # confident answers in a row toward a change
    snapshot: str = ""  # the topic of the deciding frame's JPEG (`WatchSnapshot`); empty before a decision
    retain: ClassVar[bool] = True

    def topic(self, base: str) -> str:
        return f"{base}/{self.camera}/watch/{self.watch}/attributes"

    def to_payload(self) -> dict[str, Any]:
        state = None if self.state is None else ("ON" if self.state else "OFF")
        return {"camera": self.camera, "watch": self.watch, "state": state, "question": self.question,
                "p_yes": round(self.p_yes, 4), "answer": "yes" if self.p_yes >= 0.5 else "no",
                "frame_ts": self.frame_ts, "since": self.since, "model": self.model, "run": self.run,
                "snapshot": self.snapshot}

    @classmethod
    def from_message(cls, base: str, topic: str, payload: bytes) -> WatchAttributes:
        camera, watch = _watch_topic(base, topic, "/attributes")
        d = _json(topic, payload)
        states = {"ON": True, "OFF": False, None: None}
        if d.get("state") not in states:
            raise PayloadError(f"{topic}: state must be ON, OFF or null (got {str(d.get('state'))[:40]!r})")
        state = states[d.get("state")]
        return cls(camera, watch, state, d["question"], float(d["p_yes"]), float(d["frame_ts"]),
                   None if d.get("since") is None else float(d["since"]), d.get("model", ""), int(d.get("run", 0)),
                   d.get("snapshot", ""))


@dataclass(frozen=True, eq=False)
class WatchSnapshot(Event):
    """`<base>/<camera>/watch/<name>/snapshot`: JPEG of the frame that decided the watch's state (retained)."""

    camera: str
    watch: str
    jpeg: bytes
    retain: ClassVar[bool] = True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WatchSnapshot) and (self.camera, self.watch, self.jpeg) == (
            other.camera, other.watch, other.jpeg)

    def __hash__(self) -> int:
        return hash((self.camera, self.watch, len(self.jpeg)))

    def topic(self, base: str) -> str:
        return f"{base}/{self.camera}/watch/{self.watch}/snapshot"

    def to_payload(self) -> bytes:
        return self.jpeg

    @classmethod
    def from_message(cls, base: str, topic: str, payload: bytes) -> WatchSnapshot:
        if not payload.startswith(b"\xff\xd8"):
            raise PayloadError(f"{topic}: payload is not a JPEG image")
        return cls(*_watch_topic(base, topic, "/snapshot"), payload)


def _watch_topic(base: str, topic: str, tail: str) -> tuple[str, str]:
    """(camera, watch) of `<base>/<camera>/watch/<watch><tail>`; raises `PayloadError` for another topic."""
    parts = topic[len(base) + 1:].split("/") if topic.startswith(base + "/") and topic.endswith(tail) else []
    expected = 3 + tail.count("/")
    if len(parts) != expected or parts[1] != "watch" or not parts[0] or not parts[2]:
        raise PayloadError(f"{topic}: not a {base}/<camera>/watch/<name>{tail} topic")
    return parts[0], parts[2]


@dataclass(frozen=True)
class FeatureState(Event):
    """`<base>/<source>/<feature>/state`: a runtime switch (ON/OFF), number or text (a watch's question),
    after a `/set`."""

    source: str
    feature: str
    value: bool | float | str
    retain: ClassVar[bool] = True

    def topic(self, base: str) -> str:
        return f"{base}/{self.source}/{self.feature}/state"

    def to_payload(self) -> str:
        if isinstance(self.value, bool):
            return "ON" if self.value else "OFF"
        if isinstance(self.value, str):
            return self.value
        return f"{self.value:g}"

    @classmethod
    def from_message(cls, base: str, topic: str, payload: bytes) -> FeatureState:
        if not topic.endswith("/state"):
            raise PayloadError(f"{topic}: not a /state topic")
        parts = topic[len(base) + 1:].split("/")
        if not topic.startswith(base + "/") or len(parts) != 3:
            raise PayloadError(f"{topic}: not {base}/<source>/<feature>/state")
        text = payload.decode(errors="replace")
        value: bool | float | str
        if text in ("ON", "OFF"):
            value = text == "ON"
        else:
            try:
                value = float(text)
            except ValueError:
                value = text  # a text feature (which of the three a feature is, its registry knows)
        return cls(parts[0], parts[1], value)


@dataclass(frozen=True)
class CommandResponse(Event):
    """`<base>/response/<command>`: the answer to a request, echoing the caller's transaction."""

    command: str
    status: Literal["ok", "error"]
    data: Any = None
    error: str | None = None
    transaction: Any = None

    def topic(self, base: str) -> str:
        return f"{base}/response/{self.command}"

    def to_payload(self) -> dict[str, Any]:
        return {"status": self.status, "data": self.data, "error": self.error, "transaction": self.transaction}

    @classmethod
    def from_message(cls, base: str, topic: str, payload: bytes) -> CommandResponse:
        prefix = f"{base}/response/"
        if not topic.startswith(prefix) or len(topic) == len(prefix):
            raise PayloadError(f"{topic}: not {prefix}<command>")
        d = _json(topic, payload)
        return cls(topic[len(prefix):], d["status"], d.get("data"), d.get("error"), d.get("transaction"))


@dataclass(frozen=True)
class CaptionAnswer:
    """The `data` of a `caption_now` or `ask` response: the caption (or the answer to the question)."""

    camera: str
    title: str
    caption: str
    model: str
    latency_ms: float
    tokens: tuple[int, ...]
    question: str | None = None  # an `ask`: the question, and the caption is its answer

    def to_payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {"camera": self.camera, "title": self.title, "caption": self.caption,
                                "model": self.model, "latency_ms": round(self.latency_ms, 1),
                                "tokens": list(self.tokens)}
        if self.question is not None:
            data.update(question=self.question, answer=self.caption)
        return data


@dataclass(frozen=True)
class HealthReport:
    """The `data` of a `health` response: is edged well, and each source's state."""

    version: str
    device: str
    healthy: bool
    uptime_s: float
    sources: Mapping[str, str | None]  # source id -> state
    mqtt: Mapping[str, Any] | None

    def to_payload(self) -> dict[str, Any]:
        return {"version": self.version, "device": self.device, "healthy": self.healthy,
                "uptime_s": round(self.uptime_s, 1), "sources": {k: {"state": v} for k, v in self.sources.items()},
                "mqtt": None if self.mqtt is None else dict(self.mqtt)}


@dataclass(frozen=True, eq=False)
class Stats(Event):
    """`<base>/stats`: per-source rates, drops, queue depths and latencies (QoS 0, every interval)."""

    ts: float
    uptime_s: float
    sources: dict[str, dict[str, Any]]
    system: dict[str, Any] = field(default_factory=dict)
    qos: ClassVar[int] = 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stats) and self.to_payload() == other.to_payload()

    def __hash__(self) -> int:
        return hash(self.ts)

    def topic(self, base: str) -> str:
        return f"{base}/stats"

    def to_payload(self) -> dict[str, Any]:
        return {"ts": self.ts, "uptime_s": round(self.uptime_s, 1), "sources": self.sources, "system": self.system}

    @classmethod
    def from_message(cls, base: str, topic: str, payload: bytes) -> Stats:
        if topic != f"{base}/stats":
            raise PayloadError(f"{topic}: not {base}/stats")
        d = _json(topic, payload)
        return cls(float(d["ts"]), float(d["uptime_s"]), d["sources"], d.get("system", {}))


def all_event_types() -> list[type[Event]]:
    """Every concrete message class (for tests and documentation)."""
    found: list[type[Event]] = []
    pending = list(Event.__subclasses__())
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.__name__)
