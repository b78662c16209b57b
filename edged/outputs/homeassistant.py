"""Home Assistant MQTT discovery: pure builders of the discovery messages for edged's devices.

One host device (the board) and one device per camera and microphone, linked by `via_device`.
Device-based discovery (`<prefix>/device/<id>/config`, Home Assistant >= 2024.12) by default;
`mode: component` publishes the same entities as one config per entity for older versions.
Unique ids derive from the device id, the source's config key and the entity key, so they survive
restarts and renamed display names.

An entity's key is its component key in `cmps` and the end of its unique id, so two entities of one
device must never share one: in a JSON object the second would silently replace the first (the
`motion` switch once hid the motion binary_sensor that way). Runtime features take their feature's
name as key (`/set` topics use the same name); the fixed entities' keys are chosen not to clash with
them, and `DiscoveredDevice` refuses a device whose keys do. A watch `<name>` has four entities on
its camera: the binary_sensor `watched_<name>`, the image `snapshot_<name>`, and its features, the
switch `watch_<name>` and the text `question_<name>`; no prefix starts another or a fixed key, so no
watch name can collide with them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edged import __version__
from edged.config.schema import CameraConfig, Config, MicrophoneConfig, WatchConfig
from edged.control.features import Feature
from edged.events import Message

ORIGIN = {"name": "edged", "sw": __version__}
_STATUS_TEMPLATE = "{{ 'online' if value == 'online' else 'offline' }}"  # 'disabled' greys the entity out too


@dataclass(frozen=True)
class Entity:
    """One Home Assistant entity: its platform and its platform-specific keys."""

    key: str
    platform: str
    name: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DiscoveredDevice:
    """A Home Assistant device with its entities and availability topics."""

    object_id: str  # `<prefix>/device/<object_id>/config`
    device: dict[str, Any]
    entities: tuple[Entity, ...]
    availability: tuple[str, ...]

    def __post_init__(self) -> None:
        seen: dict[str, Entity] = {}
        for e in self.entities:
            if e.key in seen:  # a programming error: fail where it is made, not in Home Assistant
                raise ValueError(f"device {self.object_id}: the {e.platform} {e.name!r} and the "
                                 f"{seen[e.key].platform} {seen[e.key].name!r} share the key {e.key!r}")
            seen[e.key] = e


def uid(config: Config, *parts: str) -> str:
    return "_".join(["edged", config.device.id, *parts]).replace("-", "_")


def host_device(config: Config) -> DiscoveredDevice:
    """The board: diagnostics of the daemon itself."""
    base = config.base_topic
    stats = f"{base}/stats"
    entities = (
        # rss_mb is MiB (kB / 1024); data_size lets Home Assistant convert it.
        _diag("rss", "Memory", stats, "{{ value_json.system.rss_mb }}", "MiB", device_class="data_size",
              icon="mdi:memory"),
        _diag("temperature", "SoC temperature", stats, "{{ value_json.system.temperature_c }}", "°C",
              device_class="temperature"),
        _diag("outbox", "Outbox pending", stats, "{{ value_json.system.mqtt.outbox_pending }}", "events",
              icon="mdi:tray-full"),
        _diag("uptime", "Uptime", stats, "{{ value_json.uptime_s | int }}", "s", device_class="duration"),
    )
    device = {"ids": [uid(config)], "name": config.device.display_name, "mf": "edged", "mdl": "edge AI daemon",
              "sw": __version__}
    return DiscoveredDevice(uid(config), device, entities, (f"{base}/available",))


def camera_device(config: Config, cam: CameraConfig, features: Sequence[Feature]) -> DiscoveredDevice:
    base = f"{config.base_topic}/{cam.id}"
    stats = f"{config.base_topic}/stats"
    src = f"value_json.sources['{cam.id}']"
    entities = [
        Entity("caption", "sensor", "Caption", {
            "state_topic": f"{base}/caption", "value_template": "{{ value_json.title }}",
            "json_attributes_topic": f"{base}/caption", "icon": "mdi:text-box-outline"}),
        # Not `motion`: that is the motion-detection switch's key (feature `motion`, `/motion/set`).
        Entity("motion_detected", "binary_sensor", "Motion", {
            "state_topic": f"{base}/motion", "payload_on": "ON", "payload_off": "OFF", "device_class": "motion"}),
        Entity("snapshot", "image", "Snapshot", {"image_topic": f"{base}/snapshot", "content_type": "image/jpeg"}),
        Entity("caption_now", "button", "Caption now", {
            "command_topic": f"{config.base_topic}/request/caption_now",
            "payload_press": json.dumps({"camera": cam.id}), "icon": "mdi:camera-iris"}),
        _diag("fps", "Analysed frame rate", stats, f"{{{{ {src}.analysed_fps }}}}", "fps"),
        _diag("frame_age", "Last frame age", stats, f"{{{{ {src}.last_frame_age_s }}}}", "s", device_class="duration"),
        # Counters since edged started: total_increasing takes the drop to 0 at a restart as a reset
        # (with `total` the long-term statistics would count it as frames un-dropped).
        _diag("dropped", "Dropped frames", stats, f"{{{{ {src}.dropped }}}}", "frames",
              state_class="total_increasing"),
        _diag("caption_latency", "Caption latency", stats, f"{{{{ {src}.caption_latency_ms.p50 | default(0) }}}}",
              "ms", device_class="duration"),
    ]
    entities += [e for w in cam.watches.values() for e in _watch_entities(base, w)]
    entities += [_feature_entity(base, f) for f in features if f.source == cam.id]
    device = {"ids": [uid(config, cam.id)], "name": cam.display_name, "mf": "edged", "mdl": "camera",
              "via_device": uid(config)}
    return DiscoveredDevice(uid(config, cam.id), device, tuple(entities),
                            (f"{config.base_topic}/available", f"{base}/status"))


def _watch_entities(base: str, watch: WatchConfig) -> list[Entity]:
    """A watch's answer (ON/OFF with the latest answer as attributes) and the frame that decided it."""
    topic = f"{base}/watch/{watch.id}"
    return [
        Entity(f"watched_{watch.id}", "binary_sensor", watch.display_name, {
            "state_topic": topic, "payload_on": "ON", "payload_off": "OFF",
            "json_attributes_topic": f"{topic}/attributes",
            **({"device_class": watch.device_class} if watch.device_class else {"icon": "mdi:eye-check-outline"})}),
        Entity(f"snapshot_{watch.id}", "image", f"{watch.display_name} snapshot", {
            "image_topic": f"{topic}/snapshot", "content_type": "image/jpeg"}),
    ]


def microphone_device(config: Config, mic: MicrophoneConfig, keywords: Sequence[str],
                      features: Sequence[Feature]) -> DiscoveredDevice:
    base = f"{config.base_topic}/{mic.id}"
    stats = f"{config.base_topic}/stats"
    src = f"value_json.sources['{mic.id}']"
    entities = [
        Entity("keyword", "event", "Keyword", {"state_topic": f"{base}/keyword", "event_types": list(keywords),
                                              "icon": "mdi:account-voice"}),
        _diag("audio_lag", "Audio lag", stats, f"{{{{ {src}.lag_ms.current | default(0) }}}}", "ms",
              device_class="duration"),
        _diag("overruns", "Audio overruns", stats, f"{{{{ {src}.overruns }}}}", "chunks",
              state_class="total_increasing"),
    ]
    entities += [_feature_entity(base, f) for f in features if f.source == mic.id]
    device = {"ids": [uid(config, mic.id)], "name": mic.display_name, "mf": "edged", "mdl": "microphone",
              "via_device": uid(config)}
    return DiscoveredDevice(uid(config, mic.id), device, tuple(entities),
                            (f"{config.base_topic}/available", f"{base}/status"))


def _diag(key: str, name: str, topic: str, template: str, unit: str, **extra: str) -> Entity:
    return Entity(key, "sensor", name, {"state_topic": topic, "value_template": template,
                                        "unit_of_measurement": unit, "entity_category": "diagnostic",
                                        "state_class": extra.pop("state_class", "measurement"), **extra})


@dataclass(frozen=True)
class Look:
    """How a runtime feature shows in Home Assistant."""

    name: str
    icon: str = ""
    unit: str = ""


FEATURE_LOOKS: dict[str, Look] = {
    "captions": Look("Captions", "mdi:text-box-outline"),
    "motion": Look("Motion detection", "mdi:motion-sensor"),
    "motion_threshold": Look("Motion threshold"),
    "motion_contour_area": Look("Motion minimum area", unit="px"),
    "privacy": Look("Privacy", "mdi:eye-off"),
    "kws": Look("Keyword spotting", "mdi:account-voice"),
}


def feature_look(name: str) -> Look:
    """The look of a feature; a keyword's switch and cutoff (`kw_<keyword>`, `cutoff_<keyword>`) and a
    watch's switch and question (`watch_<name>`, `question_<name>`) are named after theirs."""
    for prefix, title, icon in (("kw_", "Keyword", ""), ("cutoff_", "Cutoff", ""), ("watch_", "Watch", "mdi:eye"),
                                ("question_", "Question", "mdi:help-circle-outline")):
        if name.startswith(prefix):
            return Look(f"{title} {name[len(prefix):]}", icon)
    return FEATURE_LOOKS.get(name, Look(name.replace("_", " ").capitalize()))


def _feature_entity(base: str, f: Feature) -> Entity:
    look = feature_look(f.name)
    topics = {"command_topic": f"{base}/{f.name}/set", "state_topic": f"{base}/{f.name}/state"}
    extra: dict[str, Any] = {"icon": look.icon} if look.icon else {}
    if f.kind == "switch":
        return Entity(f.name, "switch", look.name, {**topics, "payload_on": "ON", "payload_off": "OFF",
                                                    "state_on": "ON", "state_off": "OFF", **extra})
    if f.kind == "text":
        return Entity(f.name, "text", look.name, {**topics, "min": int(f.minimum), "max": int(f.maximum),
                                                  "mode": "text", "entity_category": "config", **extra})
    number = {"min": f.minimum, "max": f.maximum, "step": f.step, "mode": "box", "entity_category": "config"}
    if look.unit:
        number["unit_of_measurement"] = look.unit
    return Entity(f.name, "number", look.name, {**topics, **number, **extra})


def devices(config: Config, features: Sequence[Feature],
            keywords: Mapping[str, Sequence[str]]) -> list[DiscoveredDevice]:
    """Every device edged presents: the host, its cameras, its microphones."""
    out = [host_device(config)]
    out += [camera_device(config, cam, features) for cam in config.cameras.values()]
    out += [microphone_device(config, mic, keywords.get(mic.id, ()), features) for mic in config.all_microphones]
    return out


def _availability(topics: Iterable[str]) -> list[dict[str, str]]:
    return [{"topic": t, "value_template": _STATUS_TEMPLATE} if t.endswith("/status") else {"topic": t}
            for t in topics]


def device_message(prefix: str, dev: DiscoveredDevice) -> Message:
    """`<prefix>/device/<id>/config`: the device, its origin, and its components."""
    cmps = {e.key: {"p": e.platform, "unique_id": f"{dev.object_id}_{e.key}", "name": e.name, **e.config}
            for e in dev.entities}
    payload = {"dev": dev.device, "o": ORIGIN, "cmps": cmps, "availability": _availability(dev.availability),
               "availability_mode": "all", "qos": 1}
    return _retained(f"{prefix}/device/{dev.object_id}/config", payload)


def component_messages(prefix: str, dev: DiscoveredDevice) -> list[Message]:
    """One `<prefix>/<component>/<node>/<object>/config` per entity (Home Assistant before 2024.12)."""
    out = []
    for e in dev.entities:
        payload = {"unique_id": f"{dev.object_id}_{e.key}", "name": e.name, "device": dev.device, "origin": ORIGIN,
                   "availability": _availability(dev.availability), "availability_mode": "all", "qos": 1,
                   **e.config}
        out.append(_retained(f"{prefix}/{e.platform}/{dev.object_id}/{e.key}/config", payload))
    return out


def discovery_messages(config: Config, features: Sequence[Feature],
                       keywords: Mapping[str, Sequence[str]]) -> list[Message]:
    """All discovery configs for the configured mode."""
    prefix = config.mqtt.discovery.prefix
    out: list[Message] = []
    for dev in devices(config, features, keywords):
        if config.mqtt.discovery.mode == "device":
            out.append(device_message(prefix, dev))
        else:
            out.extend(component_messages(prefix, dev))
    return out


def removal_messages(previous: Iterable[str], current: Iterable[Message]) -> list[Message]:
    """Empty retained configs for discovery topics published before but not configured any more."""
    keep = {m.topic for m in current}
    return [Message(topic, b"", qos=1, retain=True) for topic in sorted(set(previous) - keep)]


def _retained(topic: str, payload: dict[str, Any]) -> Message:
    return Message(topic, json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode(), qos=1, retain=True)
