"""Home Assistant discovery against a real broker: published at start, re-sent on HA's birth message."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.support.broker import Broker
from tests.support.daemon import DaemonProcess
from tests.support.mqtt import Subscriber

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "porch.mp4"


def write(config: Path, port: int, cameras: str) -> None:
    config.write_text(f"device: {{id: ha1, name: Porch Pi}}\nstate_dir: {config.parent / 'state'}\n"
                      f"log: {{format: json}}\nmqtt: {{port: {port}}}\nmodels: {{captioner: {{backend: none}}}}\n"
                      f"cameras:\n{cameras}")


def test_discovery_at_start_on_birth_and_removal(tmp_path: Path, broker: Broker) -> None:
    """Configs are retained at start-up; `homeassistant/status online` re-sends them (then the states);
    a camera removed from the config has its device config emptied at the next start."""
    config = tmp_path / "edged.yaml"
    write(config, broker.port, f"  porch: {{url: {SAMPLE}, loop: true, microphone: {{device: camera, loop: true}}}}\n"
                               f"  yard: {{url: {SAMPLE}, loop: true}}\n")
    sub = Subscriber(broker.port, ["homeassistant/#", "edged/ha1/#"]).start()
    daemon = DaemonProcess(config)
    try:
        porch = sub.wait_topic("homeassistant/device/edged_ha1_porch/config", timeout=30)
        payload = json.loads(porch.payload)
        assert payload["dev"]["name"] == "porch"
        mic = json.loads(sub.wait_topic("homeassistant/device/edged_ha1_porch_mic/config").payload)
        assert mic["cmps"]["keyword"]["event_types"] == ["okay_nabu"]
        assert "kw_okay_nabu" in mic["cmps"] and "cutoff_okay_nabu" in mic["cmps"]
        configs = len(sub.on("homeassistant/device/edged_ha1_porch/config"))
        states = len(sub.on("edged/ha1/porch/motion/state"))
        sub.publish("homeassistant/status", "online")
        sub.wait_for(lambda _m: len(sub.on("homeassistant/device/edged_ha1_porch/config")) > configs, timeout=10)
        sub.wait_for(lambda _m: len(sub.on("edged/ha1/porch/motion/state")) > states, timeout=5)
    finally:
        assert daemon.stop() == 0
    write(config, broker.port, f"  porch: {{url: {SAMPLE}, loop: true}}\n")
    count = len(sub.on("homeassistant/device/edged_ha1_yard/config"))
    again = DaemonProcess(config)
    try:
        sub.wait_for(lambda _m: len(sub.on("homeassistant/device/edged_ha1_yard/config")) > count, timeout=30)
        assert sub.on("homeassistant/device/edged_ha1_yard/config")[-1].payload == b""
        time.sleep(0.5)
        late = Subscriber(broker.port, ["homeassistant/device/+/config"]).start()
        time.sleep(0.5)
        topics = {m.topic for m in late.messages if m.payload}
        assert all(m.retain for m in late.messages)  # what a Home Assistant starting later will read
        late.stop()
        assert "homeassistant/device/edged_ha1_yard/config" not in topics
        assert "homeassistant/device/edged_ha1_porch/config" in topics
    finally:
        assert again.stop() == 0
        sub.stop()
