"""Privacy by construction: the privacy switch, masks before inference, secrets, no listening sockets."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil

from edged.analysis.frame_analysis import FrameAnalysis
from edged.config import parse_config
from edged.sources.frame import Frame
from tests.support.broker import Broker
from tests.support.daemon import DaemonProcess
from tests.support.mqtt import Subscriber

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "porch.mp4"


def frames_of(sub: Subscriber, source: str) -> int | None:
    stats = sub.on("edged/p1/stats")
    if not stats:
        return None
    entry = json.loads(stats[-1].payload)["sources"].get(source, {})
    return entry.get("frames_analysed")


def test_privacy_switch_stops_capture_and_says_so(tmp_path: Path, broker: Broker) -> None:
    """`privacy/set ON`: the camera and its microphone stop (status `disabled`, health `privacy`, retained
    state ON, no more frames); OFF brings both back. The setting survives a restart."""
    config = tmp_path / "edged.yaml"
    config.write_text(f"device: {{id: p1}}\nstate_dir: {tmp_path / 'state'}\nlog: {{format: json}}\n"
                      f"mqtt: {{port: {broker.port}, stats_interval: 1s}}\nmodels: {{captioner: {{backend: none}}}}\n"
                      f"cameras:\n  porch: {{url: {SAMPLE}, loop: true, microphone: {{device: camera, loop: true}}}}\n")
    sub = Subscriber(broker.port, ["edged/p1/#"]).start()
    daemon = DaemonProcess(config)
    try:
        sub.wait_topic("edged/p1/porch_mic/status", b"online", timeout=30)
        sub.publish("edged/p1/porch/privacy/set", "ON")
        sub.wait_topic("edged/p1/porch/privacy/state", b"ON")
        late = Subscriber(broker.port, ["edged/p1/porch/privacy/state"]).start()
        try:  # retained: anyone who looks later can prove the camera is private
            assert late.wait_topic("edged/p1/porch/privacy/state", b"ON").retain
        finally:
            late.stop()
        sub.wait_topic("edged/p1/porch/status", b"disabled")
        sub.wait_topic("edged/p1/porch_mic/status", b"disabled")
        health = json.loads(sub.on("edged/p1/porch/health")[-1].payload)
        assert health["state"] == "privacy"
        time.sleep(2.5)
        assert frames_of(sub, "porch") is None  # the camera reports no figures at all: it isn't running
        assert json.loads(sub.on("edged/p1/stats")[-1].payload)["sources"]["porch"]["state"] == "privacy"
        assert "porch_mic" not in json.loads(sub.on("edged/p1/stats")[-1].payload)["sources"]
        assert daemon.stop() == 0
        restarted = DaemonProcess(config)
        count = len(sub.on("edged/p1/porch/status"))
        try:
            sub.wait_for(lambda _m: len(sub.on("edged/p1/porch/status")) > count, timeout=20)
            assert sub.on("edged/p1/porch/status")[-1].payload == b"disabled"  # privacy persisted
            sub.publish("edged/p1/porch/privacy/set", "OFF")
            sub.wait_topic("edged/p1/porch/privacy/state", b"OFF")
            sub.wait_for(lambda _m: sub.on("edged/p1/porch/status")[-1].payload == b"online", timeout=20)
            sub.wait_for(lambda _m: sub.on("edged/p1/porch_mic/status")[-1].payload == b"online", timeout=20)
        finally:
            assert restarted.stop() == 0
    finally:
        daemon.stop()
        sub.stop()


def test_masks_are_applied_before_any_inference() -> None:
    """What the model and the snapshots get has the masked region blanked."""
    config = parse_config("cameras:\n  c:\n    url: a.mp4\n    motion:\n"
                          "      masks: [[[0, 0], [0.5, 0], [0.5, 1], [0, 1]]]\n")
    analysis = FrameAnalysis(config.cameras["c"])
    image = np.full((360, 640, 3), 200, np.uint8)
    frame = Frame("c", 1, time.monotonic(), time.time(), 0.0, image)
    out = analysis.analyse(frame).image
    w = out.shape[1]
    assert out[:, : w // 2 - 2].max() == 0  # left half blanked
    assert out[:, w // 2 + 2:].min() == 200  # right half untouched


def test_secrets_never_appear_in_logs_or_the_config_answer(tmp_path: Path) -> None:
    """Broker and camera passwords: not in any log line, not in the `config` command's answer, not in status."""
    secret, camera_secret = "s3cret-Broker-Pw", "s3cret-Camera-Pw"
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "edged", secret], check=True)
    broker = Broker(tmp_path, extra_config=f"allow_anonymous false\npassword_file {passwd}\n").start()
    (tmp_path / "mqtt.pass").write_text(secret + "\n")
    (tmp_path / "cam.pass").write_text(camera_secret + "\n")
    config = tmp_path / "edged.yaml"
    mqtt = f"{{port: {broker.port}, username: edged, password_file: {tmp_path / 'mqtt.pass'}}}"
    door = f"{{url: 'rtsp://admin@127.0.0.1:9/stream', password_file: {tmp_path / 'cam.pass'}}}"
    config.write_text(f"device: {{id: p1}}\nstate_dir: {tmp_path / 'state'}\nlog: {{level: debug, format: json}}\n"
                      f"mqtt: {mqtt}\nmodels: {{captioner: {{backend: none}}}}\ncameras:\n  door: {door}\n")
    sub = Subscriber(broker.port, ["edged/p1/#"], auth=("edged", secret)).start()
    daemon = DaemonProcess(config)
    try:
        sub.wait_topic("edged/p1/door/health", timeout=30)
        sub.publish("edged/p1/request/config", json.dumps({"transaction": 1}))
        answer = sub.wait_topic("edged/p1/response/config").payload.decode()
        assert json.loads(answer)["data"]["mqtt"]["password_file"] == "<redacted>"
        time.sleep(1)
    finally:
        assert daemon.stop() == 0
        sub.stop()
        broker.stop()
    published = "".join(m.payload.decode(errors="replace") for m in sub.messages)
    everything = daemon.log_path.read_text() + answer + published
    assert secret not in everything
    assert camera_secret not in everything
    assert "rtsp://admin@127.0.0.1:9/stream" in everything  # the url is reported, without the password


def test_no_listening_sockets(tmp_path: Path, broker: Broker) -> None:
    """edged only connects out (broker, cameras): it listens on nothing."""
    config = tmp_path / "edged.yaml"
    config.write_text(f"device: {{id: p1}}\nstate_dir: {tmp_path / 'state'}\nlog: {{format: json}}\n"
                      f"mqtt: {{port: {broker.port}}}\nmodels: {{captioner: {{backend: none}}}}\n"
                      f"cameras:\n  porch: {{url: {SAMPLE}, loop: true, microphone: {{device: camera, loop: true}}}}\n")
    daemon = DaemonProcess(config)
    try:
        daemon.wait_log("mqtt_connected")
        daemon.wait_log("source_connected")
        process = psutil.Process(daemon.proc.pid)
        sockets = [c for p in [process, *process.children(recursive=True)] for c in p.net_connections(kind="all")]
        assert [c for c in sockets if c.status == psutil.CONN_LISTEN] == []
        assert any(c.raddr and c.raddr[1] == broker.port for c in sockets)
    finally:
        assert daemon.stop() == 0
