"""Home Assistant discovery: payloads carry what Home Assistant requires, ids are stable, stale devices go,
and no entity can hide another (one key and one unique_id each; topics the daemon really uses)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.client import topic_matches_sub

from edged import events
from edged.analysis.kws.spotter import KeywordSpotter
from edged.config import parse_config
from edged.config.schema import Config
from edged.control.commands import SetFeature, parse
from edged.control.features import Feature, FeatureRegistry, FeatureStore
from edged.events import Message
from edged.outputs.discovery import Discovery
from edged.outputs.homeassistant import devices, discovery_messages
from edged.outputs.mqtt.link import Incoming
from edged.pipeline import Pipeline

# Keys Home Assistant's MQTT platforms require (home-assistant.io docs for each platform, and the
# device-based discovery section: `o` with a name, every component with `p` and `unique_id`).
REQUIRED = {
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
    "event": {"state_topic", "event_types"},
    "image": {"image_topic"},
    "switch": {"command_topic"},
    "number": {"command_topic"},
    "button": {"command_topic"},
    "text": {"command_topic"},
}


def config(tmp_path: Path, mode: str = "device", name: str = "Porch") -> Config:
    return parse_config(
        f"device: {{id: pi-1, name: Pi}}\nstate_dir: {tmp_path}\nmqtt: {{discovery: {{mode: {mode}}}}}\n"
        f"cameras:\n  porch: {{url: a.mp4, name: {name}, microphone: {{device: camera}}}}\n")


FEATURES = [
    Feature("porch", "captions", "switch", True, lambda v: None),
    Feature("porch", "motion", "switch", True, lambda v: None),
    Feature("porch", "motion_threshold", "number", 25.0, lambda v: None, 1, 255, 1),
    Feature("porch_mic", "kws", "switch", True, lambda v: None),
]
KEYWORDS = {"porch_mic": ["okay_nabu", "hey_jarvis"]}


def payloads(cfg: Config) -> dict[str, dict[str, Any]]:
    return {m.topic: json.loads(m.payload) for m in discovery_messages(cfg, FEATURES, KEYWORDS)}


def test_device_discovery_has_origin_device_and_valid_components(tmp_path: Path) -> None:
    """Each device config has `dev`, `o` (with a name) and `cmps`, each component its platform's keys."""
    out = payloads(config(tmp_path))
    assert set(out) == {f"homeassistant/device/{d}/config" for d in ("edged_pi_1", "edged_pi_1_porch",
                                                                      "edged_pi_1_porch_mic")}
    for payload in out.values():
        assert payload["o"]["name"] == "edged"
        assert payload["dev"]["ids"]
        assert payload["availability_mode"] == "all"
        for key, cmp in payload["cmps"].items():
            assert cmp["unique_id"].endswith(key)
            missing = REQUIRED[cmp["p"]] - set(cmp)
            assert not missing, f"{key}: missing {missing}"


def test_camera_device_entities_and_availability(tmp_path: Path) -> None:
    """The camera device has caption, motion, snapshot, caption-now, switches, numbers and diagnostics."""
    cam = payloads(config(tmp_path))["homeassistant/device/edged_pi_1_porch/config"]
    platforms = {k: c["p"] for k, c in cam["cmps"].items()}
    assert platforms["caption"] == "sensor"
    assert platforms["motion_detected"] == "binary_sensor"
    assert platforms["motion"] == "switch"  # the motion-detection switch keeps its key (and unique_id)
    assert platforms["snapshot"] == "image"
    assert platforms["caption_now"] == "button"
    assert platforms["captions"] == "switch"
    assert platforms["motion_threshold"] == "number"
    assert cam["cmps"]["fps"]["entity_category"] == "diagnostic"
    assert cam["cmps"]["caption"]["value_template"] == "{{ value_json.title }}"
    assert [a["topic"] for a in cam["availability"]] == ["edged/pi-1/available", "edged/pi-1/porch/status"]
    assert cam["dev"]["via_device"] == "edged_pi_1"
    assert json.loads(cam["cmps"]["caption_now"]["payload_press"]) == {"camera": "porch"}


def test_keyword_event_entity_lists_the_configured_keywords(tmp_path: Path) -> None:
    """The microphone's `event` entity offers exactly the configured keywords."""
    mic = payloads(config(tmp_path))["homeassistant/device/edged_pi_1_porch_mic/config"]
    assert mic["cmps"]["keyword"]["event_types"] == ["okay_nabu", "hey_jarvis"]
    assert mic["cmps"]["keyword"]["state_topic"] == "edged/pi-1/porch_mic/keyword"


def test_unique_ids_survive_a_display_name_change(tmp_path: Path) -> None:
    """Renaming a camera's display name changes its name in HA, never its ids."""
    before = devices(config(tmp_path, name="Porch"), FEATURES, KEYWORDS)
    after = devices(config(tmp_path, name="Front porch"), FEATURES, KEYWORDS)
    assert [d.object_id for d in before] == [d.object_id for d in after]
    assert before[1].device["name"] != after[1].device["name"]


def test_component_mode_publishes_one_config_per_entity(tmp_path: Path) -> None:
    """`mode: component` (HA before 2024.12): `<prefix>/<platform>/<node>/<object>/config` per entity."""
    out = payloads(config(tmp_path, mode="component"))
    topic = "homeassistant/binary_sensor/edged_pi_1_porch/motion_detected/config"
    assert topic in out
    motion = out[topic]
    assert motion["unique_id"] == "edged_pi_1_porch_motion_detected"
    assert out["homeassistant/switch/edged_pi_1_porch/motion/config"]["unique_id"] == "edged_pi_1_porch_motion"
    assert motion["device"]["ids"] == ["edged_pi_1_porch"]
    for t, payload in out.items():
        platform = t.split("/")[1]
        assert not REQUIRED[platform] - set(payload), t


def test_removed_camera_gets_an_empty_retained_config(tmp_path: Path) -> None:
    """A camera gone from the config disappears from Home Assistant at the next start."""
    sent: list[Message] = []
    Discovery(config(tmp_path), sent.append).publish(FEATURES, KEYWORDS)
    assert len(sent) == 3
    sent.clear()
    no_camera = parse_config(f"device: {{id: pi-1}}\nstate_dir: {tmp_path}\n")
    Discovery(no_camera, sent.append).publish([], {})
    removed = [m for m in sent if m.payload == b""]
    assert sorted(m.topic for m in removed) == ["homeassistant/device/edged_pi_1_porch/config",
                                                "homeassistant/device/edged_pi_1_porch_mic/config"]
    assert all(m.retain for m in removed)


@pytest.mark.parametrize("mode", ["device", "component"])
def test_discovery_can_be_disabled(tmp_path: Path, mode: str) -> None:
    """discovery.enabled: false publishes nothing."""
    cfg = parse_config(f"state_dir: {tmp_path}\nmqtt: {{discovery: {{enabled: false, mode: {mode}}}}}\n")
    sent: list[Message] = []
    assert Discovery(cfg, sent.append).publish(FEATURES, KEYWORDS) == 0
    assert sent == []


# -- every kind of entity at once, with the features the daemon's own pipeline registers ------------

KEYWORDS_ALL = ["okay_nabu", "hey_jarvis", "alexa"]
MODES = ["device", "component"]
# What the README promises per device (by the device's model); each must be announced.
PROMISED = {
    "camera": {"sensor", "binary_sensor", "image", "button", "switch", "number"},
    "microphone": {"event", "switch", "number", "sensor"},
    "edge AI daemon": {"sensor"},
}


def everything(tmp_path: Path, mode: str) -> tuple[Config, FeatureRegistry, dict[str, list[str]]]:
    """Two cameras (one with a microphone), a microphone of its own, three keywords, and the runtime
    features edged's `Pipeline` registers for them (the real code, not a list written here)."""
    cfg = parse_config(
        f"device: {{id: pi-1, name: Pi}}\nstate_dir: {tmp_path}\nmqtt: {{discovery: {{mode: {mode}}}}}\n"
        f"models: {{wakeword: {{keywords: {json.dumps(KEYWORDS_ALL)}}}}}\n"
        "cameras:\n  porch: {url: a.mp4, microphone: {device: camera}, watches: {package: "
        "{question: 'Is there a package on the doormat?'}, gate-open: {question: 'Is the gate open?', "
        "device_class: opening}}}\n"
        "  yard: {url: b.mp4}\n"
        "microphones:\n  hall: {device: 'hw:1,0'}\n")
    return (cfg, *pipeline_features(cfg))


def pipeline_features(cfg: Config) -> tuple[FeatureRegistry, dict[str, list[str]]]:
    """The runtime features and keywords the daemon's `Pipeline` registers for `cfg` (nothing started)."""
    registry = FeatureRegistry(FeatureStore(cfg.state_dir / "features.json"))
    pipeline = Pipeline(cfg, lambda _e: None, lambda _c: None, registry)
    keywords = {}
    for cam in cfg.cameras.values():
        pipeline._register_camera_features(cam)
    for mic in cfg.all_microphones:
        spotter = KeywordSpotter(mic, cfg.models.wakeword, None, lambda _h: None)  # type: ignore[arg-type]
        pipeline._register_mic_features(mic, spotter)
        keywords[mic.id] = list(spotter.keywords)
    return registry, keywords


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    duplicated = sorted(k for k, n in Counter(keys).items() if n > 1)
    assert not duplicated, f"a JSON object repeats {duplicated}: Home Assistant keeps only the last"
    return dict(pairs)


def components(cfg: Config, registry: FeatureRegistry, keywords: dict[str, list[str]]) -> Iterator[
        tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(topic, component key, component config, device) for every entity on the wire, in either mode
    (in device mode with the options the device config shares with its components, as HA reads them)."""
    for m in discovery_messages(cfg, registry.features(), keywords):
        payload = json.loads(m.payload, object_pairs_hook=no_duplicate_keys)
        if "cmps" in payload:
            shared = {k: v for k, v in payload.items() if k not in ("dev", "o", "cmps")}  # every component's
            for key, cmp in payload["cmps"].items():
                yield m.topic, key, {**shared, **cmp}, payload["dev"]
        else:
            _prefix, platform, _node, key, _config = m.topic.split("/")
            assert payload.get("p", platform) == platform
            yield m.topic, key, {"p": platform, **payload}, payload["device"]


@pytest.mark.parametrize("mode", MODES)
def test_every_entity_has_its_own_key_and_unique_id(tmp_path: Path, mode: str) -> None:
    """Within a device no two entities share a component key (a JSON object would keep only one), no
    two entities anywhere share a unique_id, every entity edged builds reaches the wire, and every
    device has the kinds of entity the README promises."""
    cfg, registry, keywords = everything(tmp_path, mode)
    built = devices(cfg, registry.features(), keywords)  # refuses duplicate keys itself
    on_wire = list(components(cfg, registry, keywords))
    assert len(on_wire) == sum(len(d.entities) for d in built)
    per_device = Counter((dev["ids"][0], key) for _t, key, _c, dev in on_wire)
    assert not [k for k, n in per_device.items() if n > 1]
    unique_ids = Counter(c["unique_id"] for _t, _k, c, _d in on_wire)
    assert not [u for u, n in unique_ids.items() if n > 1], "a unique_id is used twice"
    assert all(c["unique_id"] == f"{dev['ids'][0]}_{key}" for _t, key, c, dev in on_wire)
    for model, domains in PROMISED.items():
        for dev_id in {dev["ids"][0] for _t, _k, _c, dev in on_wire if dev["mdl"] == model}:
            shown = {c["p"] for _t, _k, c, dev in on_wire if dev["ids"][0] == dev_id}
            assert domains <= shown, f"{dev_id} has no {sorted(domains - shown)}"
    assert len({dev["ids"][0] for _t, _k, _c, dev in on_wire}) == 1 + 2 + 2  # host, cameras, microphones
    if mode == "component":
        topics = Counter(t for t, _k, _c, _d in on_wire)
        assert not [t for t, n in topics.items() if n > 1]


def test_both_modes_announce_the_same_entities(tmp_path: Path) -> None:
    """Switching `mode` moves entities between topics but keeps their platforms and unique_ids."""
    seen = {mode: sorted((c["p"], c["unique_id"]) for _t, _k, c, _d in components(*everything(tmp_path, mode)))
            for mode in MODES}
    assert seen["device"] == seen["component"]


def published_topics(cfg: Config, registry: FeatureRegistry) -> dict[str, events.Event]:
    """The topic of every state edged publishes for this config, with an example of its event."""
    examples: list[events.Event] = [events.Availability(True),
                                    events.Stats(0.0, 0.0, {}, {}),
                                    *(events.FeatureState(f.source, f.name, f.initial) for f in registry.features())]
    for cam in cfg.cameras:
        examples += [events.MotionState(cam, True), events.Snapshot(cam, b""), events.SourceStatus(cam, "online"),
                     events.Caption("e", cam, "t", "c", "motion", 0.0, 0.0, 0.0, "m")]
        for w in cfg.cameras[cam].watches:
            examples += [events.WatchState(cam, w, True), events.WatchSnapshot(cam, w, b""),
                         events.WatchAttributes(cam, w, True, "q?", 0.9, 0.0, 0.0)]
    for mic in cfg.all_microphones:
        examples += [events.KeywordDetected("k", mic.id, "okay_nabu", 1.0, 0.0, 0.0),
                     events.SourceStatus(mic.id, "online")]
    return {e.topic(cfg.base_topic): e for e in examples}


# Which event feeds which platform's state.
STATE_EVENTS: dict[str, type | tuple[type, ...]] = {
    "binary_sensor": (events.MotionState, events.WatchState), "switch": events.FeatureState,
    "number": events.FeatureState, "text": events.FeatureState, "event": events.KeywordDetected,
    "image": (events.Snapshot, events.WatchSnapshot)}


@pytest.mark.parametrize("mode", MODES)
def test_every_state_and_command_topic_is_one_edged_uses(tmp_path: Path, mode: str) -> None:
    """Each entity reads a topic edged publishes, with the event kind its platform expects and that
    event's payloads; a state topic is shared only by templates picking different fields; each
    command topic is one edged subscribes to and lands on a registered feature or request."""
    cfg, registry, keywords = everything(tmp_path, mode)
    base = cfg.base_topic
    published = published_topics(cfg, registry)
    readers: Counter[tuple[str, str]] = Counter()
    for _t, key, c, _dev in components(cfg, registry, keywords):
        state = c.get("state_topic") or c.get("image_topic")
        if state is not None:
            assert state in published, f"{key}: edged never publishes {state}"
            event = published[state]
            assert isinstance(event, STATE_EVENTS.get(c["p"], (events.Caption, events.Stats))), (key, event)
            readers[state, c.get("value_template", "")] += 1
        for a in c["availability"]:
            assert isinstance(published.get(a["topic"]), events.Availability | events.SourceStatus), a
        if c["p"] == "binary_sensor":
            assert {c["payload_on"], c["payload_off"]} == {"ON", "OFF"} == {
                e.to_payload() for e in _on_off(published[state])}
        if "json_attributes_topic" in c:
            assert c["json_attributes_topic"] in published, f"{key}: edged never publishes its attributes"
        if "command_topic" in c:
            check_command(cfg, registry, c, published.get(state or ""))
    assert not [r for r, n in readers.items() if n > 1], "two entities read the same value of one topic"
    assert readers, "no state topics at all"
    assert all(topic_matches_sub(f"{base}/#", topic) for topic, _ in readers)


def _on_off(event: events.Event) -> tuple[events.Event, events.Event]:
    """The ON and OFF examples of a binary state event (motion or a watch)."""
    if isinstance(event, events.WatchState):
        return events.WatchState(event.camera, event.watch, True), events.WatchState(event.camera, event.watch, False)
    assert isinstance(event, events.MotionState), event
    return events.MotionState(event.camera, True), events.MotionState(event.camera, False)


def check_command(cfg: Config, registry: FeatureRegistry, c: dict[str, Any], state: events.Event | None) -> None:
    """The command topic parses to what edged acts on: a feature's `/set` (whose state is the entity's
    state topic) or a request edged registered."""
    base = cfg.base_topic
    subscriptions = [f"{base}/+/+/set", f"{base}/request/+"]
    assert any(topic_matches_sub(s, c["command_topic"]) for s in subscriptions), c["command_topic"]
    text = "Is the gate open?" if c["p"] == "text" else str(c.get("max", ""))
    payload = c.get("payload_press") or c.get("payload_on") or text
    command = parse(Incoming(c["command_topic"], payload.encode()), base, cfg.mqtt.discovery.prefix)
    if c["p"] == "button":
        assert command.command == "caption_now", command  # type: ignore[union-attr]
        return
    assert isinstance(command, SetFeature), command
    assert isinstance(state, events.FeatureState), c
    assert (command.source, command.feature) == (state.source, state.feature)
    registry.set(command.source, command.feature, command.value)  # raises on an unknown feature or value
    if c["p"] == "switch":
        assert (c["state_on"], c["state_off"]) == (events.FeatureState("x", "y", True).to_payload(),
                                                   events.FeatureState("x", "y", False).to_payload())


def test_a_feature_named_like_a_fixed_entity_is_refused(tmp_path: Path) -> None:
    """A runtime feature whose name is a fixed entity's key cannot silently replace that entity."""
    clash = [Feature("porch", "caption_now", "switch", True, lambda v: None)]
    with pytest.raises(ValueError, match="share the key 'caption_now'"):
        devices(config(tmp_path), clash, KEYWORDS)


def test_each_watch_is_a_binary_sensor_with_its_snapshot_switch_and_question(tmp_path: Path) -> None:
    """A watch shows on its camera as a binary_sensor (ON/OFF, the latest answer as attributes), the image
    of the frame that decided it, a switch and its question as a text entity (255 characters, as
    Home Assistant's text state holds)."""
    cfg, registry, keywords = everything(tmp_path, "device")
    cam = payloads_of(cfg, registry, keywords)["homeassistant/device/edged_pi_1_porch/config"]["cmps"]
    watch = cam["watched_package"]
    assert watch["p"] == "binary_sensor" and watch["name"] == "Package"
    assert watch["state_topic"] == "edged/pi-1/porch/watch/package"
    assert watch["json_attributes_topic"] == "edged/pi-1/porch/watch/package/attributes"
    assert watch["unique_id"] == "edged_pi_1_porch_watched_package"
    assert cam["snapshot_package"]["image_topic"] == "edged/pi-1/porch/watch/package/snapshot"
    assert cam["watch_package"]["p"] == "switch"
    assert cam["watch_package"]["command_topic"] == "edged/pi-1/porch/watch_package/set"
    question = cam["question_package"]
    assert (question["p"], question["max"], question["mode"]) == ("text", 255, "text")
    assert question["command_topic"] == "edged/pi-1/porch/question_package/set"
    assert cam["watched_gate-open"]["name"] == "Gate open"  # names with '-' keep their topics
    assert cam["watched_gate-open"]["device_class"] == "opening" and "device_class" not in watch
    assert not [k for k in cam if k.startswith("watch") and "yard" in k]


def payloads_of(cfg: Config, registry: FeatureRegistry, keywords: dict[str, list[str]]) -> dict[str, Any]:
    return {m.topic: json.loads(m.payload) for m in discovery_messages(cfg, registry.features(), keywords)}
