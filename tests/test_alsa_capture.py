"""ALSA capture end to end: the daemon records from a real ALSA device, spots keywords, releases it.

The device is PulseAudio's pipe source behind ALSA's `pulse` plugin (tests/support/pulse.py): the
daemon's capture path is the one a USB microphone on a Pi takes (sounddevice -> PortAudio -> ALSA);
only the sound card under it is a pipe, as this machine has none.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.daemon import DaemonProcess
from tests.support.mqtt import Received, Subscriber
from tests.support.pulse import RATE, PulseMic

KWS = Path(__file__).parent / "fixtures" / "kws"
BASE = "edged/d1"


@pytest.fixture
def mic(tmp_path: Path) -> Iterator[PulseMic]:
    m = PulseMic(tmp_path).start()
    yield m
    m.stop()


def keyword_starts(name: str) -> list[float]:
    """Ground truth: when each keyword of the committed positive file starts."""
    manifest = json.loads((KWS / "manifest.json").read_text())
    return [o["start"] for o in manifest["occurrences"] if o["file"] == name]


def decode(path: Path) -> bytes:
    return subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1",
                           "-ar", str(RATE), "-"], capture_output=True, check=True).stdout


def write_config(tmp_path: Path, port: int, clip: Path, device: str) -> Path:
    path = tmp_path / "edged.yaml"
    path.write_text(
        f"device: {{id: d1}}\nstate_dir: {tmp_path / 'state'}\nlog: {{level: debug, format: json}}\n"
        f"mqtt: {{port: {port}, stats_interval: 1s}}\n"
        "models: {captioner: {backend: none}, wakeword: {keywords: [okay_nabu], defaults: model}}\n"
        f"cameras:\n  porch: {{url: {clip}, loop: true, microphone: {{device: {device}}}}}\n")
    return path


@pytest.fixture
def recording(tmp_path: Path, broker: Broker, clip: Path, mic: PulseMic) -> Iterator[Subscriber]:
    """`edged run` capturing from the pulse device, online and recording; yields a subscriber to its topics."""
    sub = Subscriber(broker.port, [f"{BASE}/#"]).start()
    daemon = DaemonProcess(write_config(tmp_path, broker.port, clip, "pulse"), env=mic.env)
    try:
        sub.wait_topic(f"{BASE}/porch_mic/status", b"online", timeout=30)
        assert mic.recording_clients() == 1
        yield sub
    finally:
        assert daemon.stop() == 0
        sub.stop()


def test_alsa_microphone_hears_each_keyword(recording: Subscriber, mic: PulseMic) -> None:
    """Four spoken "okay nabu"s played into the device in real time come out as keyword events."""
    starts = keyword_starts("positive_okay_nabu.flac")
    assert len(starts) == 4
    mic.play(decode(KWS / "positive_okay_nabu.flac"))
    hits = recording.wait_for(lambda m: len([x for x in m if x.topic.endswith("/keyword")]) >= 3, timeout=40)
    events = [json.loads(x.payload) for x in hits if x.topic.endswith("/keyword")]
    assert {e["event_type"] for e in events} == {"okay_nabu"}
    # Stream time is audio time: each hit lands just after a keyword of the ground truth.
    for e in events:
        assert any(0.0 < e["stream_time"] - s < 2.5 for s in starts), (e["stream_time"], starts)


def test_privacy_releases_the_capture_device(recording: Subscriber, mic: PulseMic) -> None:
    """Privacy on closes the ALSA stream (PulseAudio sees no recording client); off opens it again."""
    recording.publish(f"{BASE}/porch/privacy/set", "ON")
    recording.wait_topic(f"{BASE}/porch/privacy/state", b"ON")
    assert wait_until(lambda: mic.recording_clients() == 0), "the device is still open in privacy mode"
    recording.publish(f"{BASE}/porch/privacy/set", "OFF")
    recording.wait_topic(f"{BASE}/porch/privacy/state", b"OFF")
    assert wait_until(lambda: mic.recording_clients() == 1), "capture did not resume after privacy off"


def test_unknown_alsa_device_names_the_devices_there_are(
    tmp_path: Path, broker: Broker, clip: Path, mic: PulseMic
) -> None:
    """A wrong device name is reported on the microphone's health topic with the devices that exist;
    the camera beside it keeps running."""
    sub = Subscriber(broker.port, [f"{BASE}/#"]).start()
    daemon = DaemonProcess(write_config(tmp_path, broker.port, clip, "usb-mic-that-is-not-there"), env=mic.env)
    try:
        sub.wait_topic(f"{BASE}/porch/status", b"online", timeout=30)

        def reported(msgs: list[Received]) -> bool:
            return any(m.topic == f"{BASE}/porch_mic/health" and b"no capture device" in m.payload for m in msgs)

        health = [m for m in sub.wait_for(reported, timeout=30) if m.topic == f"{BASE}/porch_mic/health"][-1]
        reason = json.loads(health.payload)["reason"]
        assert "'usb-mic-that-is-not-there'" in reason and "pulse" in reason, reason
    finally:
        assert daemon.stop() == 0
        sub.stop()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False
