"""Home Assistant discovery: payloads carry what Home Assistant requires, ids are stable, stale devices go."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edged.config import parse_config
from edged.config.schema import Config
from edged.control.features import Feature
from edged.events import Message
from edged.outputs.discovery import Discovery
from edged.outputs.homeassistant import devices, discovery_messages

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
}


def config(tmp_path: Path, mode: str = "device", name: str = "Porch") -> Config:
    return parse_config(
        f"device: {{id: pi-1, name: Pi}}\nstate_dir: {tmp_path}\nmqtt: {{discovery: {{mode: {mode}}}}}\n"
        f"cameras:\n  porch: {{url: a.mp4, name: {name}, microphone: {{device: camera}}}}\n")


FEATURES = [
    Feature("porch", "captions", "switch", "Captions", True, lambda v: None),
    Feature("porch", "motion_threshold", "number", "Motion threshold", 25.0, lambda v: None, 1, 255, 1),
    Feature("porch_mic", "kws", "switch", "Keyword spotting", True, lambda v: None),
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
    assert platforms["motion"] == "binary_sensor"
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
    topic = "homeassistant/binary_sensor/edged_pi_1_porch/motion/config"
    assert topic in out
    motion = out[topic]
    assert motion["unique_id"] == "edged_pi_1_porch_motion"
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
