"""Home Assistant discovery against a real broker and a real Home Assistant Core.

The first test watches the broker only (published at start, re-sent on HA's birth message, removed
cameras emptied). The others run the real edged daemon against Home Assistant Core 2025.4.4 (one
instance for the module, installed by `script/setup test`; see tests/support/homeassistant.py) and
check what a user sees there: every entity edged announces, in the right domain and device, live
states, a working button, and everything unavailable when edged dies.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edged.config import load_config
from edged.events import Message
from edged.outputs.homeassistant import discovery_messages
from tests.support.broker import Broker
from tests.support.daemon import DaemonProcess
from tests.support.homeassistant import HomeAssistant, missing
from tests.support.mqtt import Received, Subscriber
from tests.test_homeassistant import PROMISED, pipeline_features  # what the README promises per device

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


# -- against a real Home Assistant -----------------------------------------------------------------

PREFIX = "homeassistant"
NOT_LIVE = ("unavailable", "unknown")
_device_ids = itertools.count(1)


@dataclass(frozen=True)
class Announced:
    """One entity as edged announced it on the broker."""

    domain: str
    unique_id: str
    device: str  # the device's first identifier
    model: str
    config: dict[str, Any] = field(compare=False)  # not part of the identity (and unhashable)

    @property
    def state_topic(self) -> str | None:
        return self.config.get("state_topic") or self.config.get("image_topic")


@dataclass
class Edged:
    """A running daemon, a subscriber that saw everything it published, and what it announced."""

    daemon: DaemonProcess
    sub: Subscriber
    base: str
    announced: list[Announced]
    started: float  # wall clock, to pick this test's lines from Home Assistant's system log


@pytest.fixture(scope="module")
def ha_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One Mosquitto for the module's Home Assistant (the per-test `broker` would outlive it)."""
    b = Broker(tmp_path_factory.mktemp("ha-broker")).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def home_assistant(tmp_path_factory: pytest.TempPathFactory, ha_broker: Broker) -> Iterator[HomeAssistant]:
    """A real Home Assistant, onboarded, with the MQTT integration on `ha_broker` and its birth seen."""
    why = missing()
    if why and os.environ.get("CI"):
        pytest.fail(why)  # CI must run the real thing
    if why:
        pytest.skip(f"{why} (needs a Python 3.13; in CI this fails)")
    ha = HomeAssistant(tmp_path_factory.mktemp("homeassistant"))
    status = Subscriber(ha_broker.port, [f"{PREFIX}/status"]).start()
    try:
        ha.start()
        ha.add_mqtt("127.0.0.1", ha_broker.port)
        status.wait_topic(f"{PREFIX}/status", b"online", timeout=60)
        yield ha
    finally:
        status.stop()
        ha.stop()


TINY = ROOT / "tests" / "fixtures" / "glm-edge-v-tiny"
WATCH = ("package: {question: 'Is there a package on the doormat?', interval: 5s, min_confidence: 0.6, hold: 1, "
         "device_class: occupancy}")


def write_config(tmp_path: Path, broker: Broker, mode: str, captioner: str = "{backend: none}") -> Path:
    """The porch sample (looped) with its microphone and a watch, no captioner (unless given), discovery
    in `mode`, a fresh device id (no entity left over from another test)."""
    config = tmp_path / "edged.yaml"
    config.write_text(
        f"device: {{id: live{next(_device_ids)}, name: Porch Pi}}\nstate_dir: {tmp_path / 'state'}\n"
        f"log: {{format: json}}\nmqtt: {{port: {broker.port}, stats_interval: 2s, discovery: {{mode: {mode}}}}}\n"
        f"models: {{captioner: {captioner}}}\n"
        f"cameras:\n  porch: {{url: {SAMPLE}, loop: true, microphone: {{device: camera, loop: true}},\n"
        f"          watches: {{{WATCH}}}}}\n")
    return config


def start_edged(config: Path, broker: Broker) -> Edged:
    """The real daemon on `config`; returns once every discovery config it logged as published has
    reached the broker."""
    device = load_config(config).device.id
    base = f"edged/{device}"
    sub = Subscriber(broker.port, [f"{PREFIX}/#", f"{base}/#"]).start()
    edged = Edged(DaemonProcess(config), sub, base, [], time.time())
    try:
        published = int(str(edged.daemon.wait_log("discovery_published", timeout=60)["configs"]))
        prefix = f"edged_{device}"
        sub.wait_for(lambda _m: len(configs(sub, prefix)) >= published, timeout=10)
    except BaseException:
        edged.daemon.stop()  # whatever its exit status: the wait's own error says what went wrong
        sub.stop()
        raise
    edged.announced = announced(configs(sub, prefix))
    return edged


def configs(sub: Subscriber, uid_prefix: str) -> dict[str, dict[str, Any]]:
    """The latest non-empty discovery config per topic for devices whose ids start with `uid_prefix`,
    of those published while `sub` listened (the broker flags the retained ones it had before)."""
    latest: dict[str, Received] = {}
    for m in sub.messages:
        if m.topic.startswith(f"{PREFIX}/") and m.topic.endswith("/config") and not m.retain:
            latest[m.topic] = m
    out = {}
    for topic, m in latest.items():
        payload = json.loads(m.payload) if m.payload else {}
        device = payload.get("dev") or payload.get("device") or {}
        if device.get("ids", [""])[0].startswith(uid_prefix):
            out[topic] = payload
    return out


def announced(by_topic: dict[str, dict[str, Any]]) -> list[Announced]:
    """Every entity in device-based (`cmps`) and per-component discovery configs."""
    out = []
    for topic, payload in by_topic.items():
        if "cmps" in payload:
            dev = payload["dev"]
            out += [Announced(c["p"], c["unique_id"], dev["ids"][0], dev["mdl"], c) for c in payload["cmps"].values()]
        else:
            dev = payload["device"]
            out.append(Announced(topic.split("/")[1], payload["unique_id"], dev["ids"][0], dev["mdl"], payload))
    return out


def stop(edged: Edged) -> None:
    if edged.daemon.proc.poll() is None:
        assert edged.daemon.stop() == 0
    else:
        edged.daemon.log.close()
    edged.sub.stop()


def registry(ha: HomeAssistant, expected: list[Announced]) -> dict[tuple[str, str], dict[str, Any]]:
    """HA's entity registry entries by (domain, unique_id), as HA keys them, once every expected one is
    there (or after 30 s: the caller says what is missing)."""
    wanted = {(a.domain, a.unique_id) for a in expected}

    def current() -> dict[tuple[str, str], dict[str, Any]]:
        entries = {(e["entity_id"].split(".")[0], e["unique_id"]): e for e in ha.entities()}
        return {key: e for key, e in entries.items() if key in wanted}

    def complete() -> dict[tuple[str, str], dict[str, Any]] | None:
        found = current()
        return found if len(found) == len(wanted) else None

    try:
        return ha.wait_for(complete, 30, "entity for every announced unique_id")
    except RuntimeError:
        return current()


# Where Home Assistant reports trouble with MQTT entities: the integration (rejected discovery payloads,
# template errors), the entity platforms (duplicate unique ids, unit / device-class / state-class
# mismatches) and the helpers (templates, registries).
_OUR_LOGGERS = tuple(f"homeassistant.components.{d}" for d in
                     ("mqtt", "sensor", "binary_sensor", "switch", "number", "button", "event", "image", "text"))


def discovery_problems(ha: HomeAssistant, edged: Edged) -> list[str]:
    """Home Assistant's warnings and errors since this test's daemon started about MQTT entities."""
    out = []
    for e in ha.system_log():
        text = " ".join(e.get("message", []))
        ours = e["name"].startswith((*_OUR_LOGGERS, "homeassistant.helpers.")) or "edged" in text
        if ours and e["timestamp"] >= edged.started:
            out.append(f"{e['level']} {e['name']}: {text}")
    return out


def received(edged: Edged, topic: str) -> Received | None:
    found = edged.sub.on(topic)
    return found[-1] if found else None


def expected_state(ha: HomeAssistant, a: Announced, message: Received) -> str:
    """'live', or 'unknown' where edged published nothing usable (a null: HA's own template renderer
    turns the payload into 'None', e.g. the SoC temperature on a machine without thermal zones)."""
    template = a.config.get("value_template")
    if not template:
        return "live"
    text = message.payload.decode()
    variables: dict[str, Any] = {"value": text}
    with contextlib.suppress(ValueError):  # not JSON: templates see `value` only
        variables["value_json"] = json.loads(text)
    rendered = ha.rest("POST", "/api/template", {"template": template, "variables": variables})
    return "unknown" if str(rendered).strip() in ("None", "") else "live"


def live_states(ha: HomeAssistant, edged: Edged, entity_ids: dict[Announced, str]) -> dict[str, str]:
    """The HA state of each entity whose state topic edged published on, once all are as expected (or
    20 s); {entity_id: 'ok' | what went wrong}."""

    def check() -> dict[str, str]:
        states = ha.states()
        out = {}
        for a, entity_id in entity_ids.items():
            message = received(edged, a.state_topic) if a.state_topic else None
            if message is None:
                continue
            state = states.get(entity_id, {}).get("state", "absent")
            want = expected_state(ha, a, message)
            ok = state == "unknown" if want == "unknown" else state not in NOT_LIVE
            out[entity_id] = "ok" if ok else f"{entity_id} is {state!r}, expected {want}"
        return out

    def settled() -> dict[str, str] | None:
        report = check()
        return report if all(v == "ok" for v in report.values()) else None

    try:
        return ha.wait_for(settled, 20, "live state for every entity edged published a state for")
    except RuntimeError:
        return check()


@pytest.fixture(params=["device", "component"])
def edged(request: pytest.FixtureRequest, tmp_path: Path, ha_broker: Broker,
          home_assistant: HomeAssistant) -> Iterator[Edged]:
    running = start_edged(write_config(tmp_path, ha_broker, request.param), ha_broker)
    yield running
    stop(running)


@pytest.mark.slow
def test_home_assistant_shows_every_entity_edged_announces(home_assistant: HomeAssistant, edged: Edged) -> None:
    """Every entity in the discovery configs on the broker is in HA's registry with its domain, unique_id
    and device; HA rejected nothing; each device has the kinds of entity the README promises."""
    ha = home_assistant
    expected = edged.announced
    found = registry(ha, expected)
    problems = discovery_problems(ha, edged)
    by_device = {d["id"]: d for d in ha.devices()}
    print(f"announced {len(expected)} entities, Home Assistant shows {len(found)}: "
          f"{dict(sorted(Counter(domain for domain, _ in found).items()))}")
    assert not problems, "\n".join(problems)
    missing_ids = sorted(f"{a.domain} {a.unique_id}" for a in expected if (a.domain, a.unique_id) not in found)
    assert not missing_ids, f"announced but not in Home Assistant: {missing_ids}"
    for a in expected:
        entry = found[a.domain, a.unique_id]
        assert ["mqtt", a.device] in by_device[entry["device_id"]]["identifiers"], a.unique_id
        assert entry["entity_category"] == a.config.get("entity_category"), a.unique_id
    for model, domains in PROMISED.items():
        shown = {a.domain for a in expected if a.model == model and (a.domain, a.unique_id) in found}
        assert domains <= shown, f"{model}: Home Assistant shows no {sorted(domains - shown)}"
    watch = {a.domain: a for a in expected if a.unique_id.endswith("_package")}
    assert set(watch) == {"binary_sensor", "image", "switch", "text"}, sorted(watch)
    assert all((a.domain, a.unique_id) in found for a in watch.values())


def entity_ids(ha: HomeAssistant, edged: Edged) -> dict[Announced, str]:
    """The HA entity_id of everything edged announced, once HA has it all."""
    found = registry(ha, edged.announced)
    assert len(found) == len(edged.announced), "not every announced entity is in Home Assistant"
    return {a: found[a.domain, a.unique_id]["entity_id"] for a in edged.announced}


@pytest.mark.slow
def test_home_assistant_states_are_live_and_go_unavailable_when_edged_is_killed(
        home_assistant: HomeAssistant, edged: Edged) -> None:
    """Where edged published a state (motion, switches, numbers, diagnostics) HA shows it; after
    `kill -9` the broker's last will makes every entity unavailable."""
    ha = home_assistant
    ids = entity_ids(ha, edged)
    motion = next((a for a in edged.announced if a.domain == "binary_sensor"
                   and a.config.get("device_class") == "motion"), None)
    assert motion is not None, "edged announced no motion binary_sensor"
    edged.sub.wait_topic(motion.config["state_topic"], timeout=30)  # the porch sample has motion
    report = live_states(ha, edged, ids)
    print("live:", sorted(e for e, v in report.items() if v == "ok"))
    assert all(v == "ok" for v in report.values()), [v for v in report.values() if v != "ok"]
    states = ha.states()
    for a, entity_id in ids.items():  # HA kept the unit, device class and state class edged announced
        attributes = states[entity_id]["attributes"]
        for key in ("unit_of_measurement", "device_class", "state_class"):
            assert attributes.get(key) == a.config.get(key), (entity_id, key, attributes.get(key))
    by_domain = Counter(e.split(".")[0] for e in report)
    assert by_domain["binary_sensor"] == 1 and by_domain["switch"] >= 5 and by_domain["number"] >= 3, by_domain
    assert not discovery_problems(ha, edged), "\n".join(discovery_problems(ha, edged))

    edged.daemon.proc.kill()
    edged.daemon.proc.wait(10)

    def all_unavailable() -> bool:
        states = ha.states()
        return all(states[e]["state"] == "unavailable" for e in ids.values())

    try:
        ha.wait_for(all_unavailable, 20, "unavailable state for every entity after kill -9")
    finally:
        states = ha.states()
        print("after kill -9:", Counter(states[e]["state"] for e in ids.values()))


@pytest.mark.slow
@pytest.mark.parametrize("edged", ["device"], indirect=True)
def test_home_assistant_button_reaches_edged(home_assistant: HomeAssistant, edged: Edged) -> None:
    """Pressing the camera's "Caption now" button in HA sends edged a caption_now request; with no
    caption model configured edged answers with an error naming the missing model."""
    ha = home_assistant
    ids = entity_ids(ha, edged)
    button = next(e for a, e in ids.items() if a.domain == "button")
    topic = f"{edged.base}/response/caption_now"
    ha.wait_for(lambda: ha.states()[button]["state"] != "unavailable", 20, "available button")
    ha.call_service("button", "press", entity_id=button)
    request = edged.sub.wait_topic(f"{edged.base}/request/caption_now", timeout=15)
    assert json.loads(request.payload) == {"camera": "porch"}  # what HA sent on the button's command topic
    response = json.loads(edged.sub.wait_topic(topic, timeout=15).payload)
    assert response["status"] == "error", response
    assert "no caption model" in response["error"], response


def before_the_fix(messages: list[Message]) -> list[Message]:
    """What edged published before the motion binary_sensor had a key of its own (all else alike): in
    device mode the switch's `motion` component had replaced it; in component mode it sat on
    `.../binary_sensor/<node>/motion/config` with the switch's unique_id."""
    out = []
    for m in messages:
        payload = json.loads(m.payload)
        topic = m.topic
        if "cmps" in payload:
            payload["cmps"].pop("motion_detected", None)
        elif topic.split("/")[3] == "motion_detected":
            topic = topic.replace("/motion_detected/", "/motion/")
            payload["unique_id"] = payload["unique_id"].removesuffix("_detected")
        out.append(Message(topic, json.dumps(payload).encode(), qos=1, retain=True))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["device", "component"])
def test_upgrade_keeps_the_entity_ids_home_assistant_had(tmp_path: Path, ha_broker: Broker,
                                                         home_assistant: HomeAssistant, mode: str) -> None:
    """From the release whose switch hid the sensor: every entity HA had keeps its entity_id (so its
    history and automations), and the motion binary_sensor appears; in component mode it takes over
    the entity_id of the one that shared the switch's unique_id, which edged removes."""
    ha = home_assistant
    config = write_config(tmp_path, ha_broker, mode)
    cfg = load_config(config)
    registry_, keywords = pipeline_features(cfg)
    old = before_the_fix(discovery_messages(cfg, registry_.features(), keywords))
    publisher = Subscriber(ha_broker.port, []).start()
    for m in old:
        publisher.publish(m.topic, m.payload, retain=True)
    publisher.stop()
    cfg.state_dir.mkdir(parents=True, exist_ok=True)  # what that release remembered having published
    (cfg.state_dir / "discovery.json").write_text(json.dumps({"topics": sorted(m.topic for m in old)}))
    had = announced({m.topic: json.loads(m.payload) for m in old})
    before = {key: e["entity_id"] for key, e in registry(ha, had).items()}
    assert len(before) == len(had)

    edged = start_edged(config, ha_broker)
    try:
        after = {key: e["entity_id"] for key, e in registry(ha, edged.announced).items()}
        assert len(after) == len(edged.announced)
        kept = {key: entity_id for key, entity_id in before.items() if key in after}
        assert all(after[key] == entity_id for key, entity_id in kept.items()), (kept, after)
        motion = next(key for key in after if key[0] == "binary_sensor" and "_watched_" not in key[1])
        assert motion[1].endswith("_porch_motion_detected")
        if mode == "component":
            gone = next(key for key in before if key not in after)
            assert gone == ("binary_sensor", motion[1].removesuffix("_detected"))
            ha.wait_for(lambda: gone not in {(e["entity_id"].split(".")[0], e["unique_id"]) for e in ha.entities()},
                        10, "removal of the old motion sensor")
            assert after[motion] == before[gone]  # same entity_id: the recorder's history continues
        else:
            assert set(before) == set(after) - {motion}
    finally:
        stop(edged)


@pytest.mark.slow
def test_home_assistant_shows_a_watch_answered_by_the_tiny_model(tmp_path: Path, ha_broker: Broker,
                                                                  home_assistant: HomeAssistant) -> None:
    """With the tiny model answering the watch on clip frames, Home Assistant's binary_sensor takes the
    state edged publishes (on/off) with the latest answer (p_yes, question) as attributes, and the
    question's text entity shows the question; a question typed into that text entity reaches edged."""
    ha = home_assistant
    edged = start_edged(write_config(tmp_path, ha_broker, "device", f"{{path: {TINY}, max_new_tokens: 8}}"),
                        ha_broker)
    try:
        ids = entity_ids(ha, edged)
        sensor = next(e for a, e in ids.items() if a.domain == "binary_sensor" and a.unique_id.endswith("_package"))
        text = next(e for a, e in ids.items() if a.domain == "text")
        image = next(e for a, e in ids.items() if a.domain == "image" and a.unique_id.endswith("_package"))
        # the ids the README's example uses (HA adds _2, _3 when earlier tests' devices took them)
        for entity_id, expected in ((sensor, "binary_sensor.porch_package"), (image, "image.porch_package_snapshot"),
                                    (text, "text.porch_question_package")):
            assert re.fullmatch(re.escape(expected) + r"(_\d+)?", entity_id), entity_id
        topic = f"{edged.base}/porch/watch/package"
        state = edged.sub.wait_topic(topic, timeout=60).payload.decode()
        edged.sub.wait_topic(f"{topic}/attributes", timeout=10)

        def shown() -> dict[str, Any] | None:
            now = ha.states().get(sensor, {})
            latest = received(edged, topic)
            want = latest.payload.decode().lower() if latest is not None else state.lower()
            return now if now.get("state") == want and "p_yes" in now.get("attributes", {}) else None

        now = ha.wait_for(shown, 20, "the watch's state and attributes in Home Assistant")
        assert now["attributes"]["question"] == "Is there a package on the doormat?"
        assert 0.0 <= now["attributes"]["p_yes"] <= 1.0
        assert ha.states()[text]["state"] == "Is there a package on the doormat?"
        ha.call_service("text", "set_value", entity_id=text, value="Is the gate open?")
        edged.sub.wait_topic(f"{edged.base}/porch/question_package/state", b"Is the gate open?", timeout=15)
        edged.sub.wait_for(lambda _m: any(b"Is the gate open?" in m.payload
                                          for m in edged.sub.on(f"{topic}/attributes")), timeout=30)
        assert not discovery_problems(ha, edged), "\n".join(discovery_problems(ha, edged))
    finally:
        stop(edged)
