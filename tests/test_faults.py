"""Fault injection with real processes on loopback: what a real installation throws at edged.

Each test is bounded in time. docs/reliability.md lists each fault, what edged does, and the test here.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edged.config import parse_config
from edged.config.schema import BackoffConfig, CameraConfig
from edged.events import CameraEvent, Message, TriggerKind
from edged.outputs.mqtt.outbox import Outbox
from edged.outputs.mqtt.publisher import MqttPublisher
from edged.queues import QueueClosed
from edged.sources.video import VideoSource
from edged.supervise import Health, SourceState
from tests.support.broker import Broker
from tests.support.daemon import DaemonProcess
from tests.support.mqtt import Subscriber
from tests.support.rtsp import RtspServer

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "porch.mp4"


def health_of(sub: Subscriber, source: str) -> list[dict[str, object]]:
    return [json.loads(m.payload) for m in sub.on(f"edged/f1/{source}/health")]


def frames_analysed(sub: Subscriber, camera: str) -> int:
    stats = sub.on("edged/f1/stats")
    return int(json.loads(stats[-1].payload)["sources"].get(camera, {}).get("frames_analysed", 0)) if stats else 0


def write_config(path: Path, port: int, cameras: str, extra: str = "") -> Path:
    path.write_text(f"device: {{id: f1}}\nstate_dir: {path.parent / 'state'}\nlog: {{level: info, format: json}}\n"
                    f"mqtt: {{port: {port}, stats_interval: 1s, reconnect: {{initial: 1s, max: 1s}}}}\n"
                    f"models: {{captioner: {{backend: none}}}}\n{extra}cameras:\n{cameras}")
    return path


def status_online_after(sub: Subscriber, camera: str, mark: int) -> bool:
    return any(m.payload == b"online" for m in sub.on(f"edged/f1/{camera}/status")[mark:])


@pytest.mark.slow
def test_one_camera_server_dies_stalls_and_returns_the_other_keeps_flowing(tmp_path: Path, broker: Broker) -> None:
    """Cameras b and c share an RTSP server that is killed, restarted after 5 s, then stalled: camera a keeps
    being analysed throughout, b's health topic says what happened, and b and c are both `online` again
    within 5 s of their server's return (the promise: a 5 s outage has taken the back-off to its cap)."""
    server = RtspServer().start()
    config = write_config(tmp_path / "edged.yaml", broker.port,
                          f"  a: {{url: {SAMPLE}, loop: true}}\n"
                          f"  b: {{url: '{server.url}', read_timeout: 4s, stall_intervals: 5}}\n"
                          f"  c: {{url: '{server.url}'}}\n")
    sub = Subscriber(broker.port, ["edged/f1/#"]).start()
    daemon = DaemonProcess(config)
    try:
        for cam in ("b", "c"):
            sub.wait_topic(f"edged/f1/{cam}/status", b"online", timeout=30)
        killed = time.monotonic()
        server.kill()
        sub.wait_for(lambda _m: any(h["state"] == "reconnecting" for h in health_of(sub, "b")), timeout=20)
        reconnecting = next(h for h in health_of(sub, "b") if h["state"] == "reconnecting")
        assert "refused" in str(reconnecting["reason"]).lower() or "closed" in str(reconnecting["reason"])
        assert sub.on("edged/f1/b/status")[-1].payload == b"offline"
        before = frames_analysed(sub, "a")
        time.sleep(3)
        assert frames_analysed(sub, "a") > before + 5  # the healthy camera kept going
        time.sleep(max(0.0, killed + 5.0 - time.monotonic()))
        marks = {cam: len(sub.on(f"edged/f1/{cam}/status")) for cam in ("b", "c")}
        server.start()  # returns once the server answers on its port
        back = time.monotonic()
        online: dict[str, float] = {}
        for cam in ("b", "c"):
            sub.wait_for(lambda _m, cam=cam: status_online_after(sub, cam, marks[cam]), timeout=20)
            online[cam] = round(time.monotonic() - back, 2)
        assert max(online.values()) <= 5.0, online
        server.stall()
        sub.wait_for(lambda _m: any(h["state"] == "stalled" for h in health_of(sub, "b")), timeout=20)
        stalled = next(h for h in health_of(sub, "b") if h["state"] == "stalled")
        assert "no data for" in str(stalled["reason"])
        server.resume()
        sub.wait_for(lambda _m: health_of(sub, "b")[-1]["state"] == "streaming", timeout=30)
        assert daemon.proc.poll() is None
    finally:
        assert daemon.stop() == 0
        sub.stop()
        server.kill()


@pytest.mark.slow
def test_broker_killed_repeatedly_under_load_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL the broker three times while 1,500 events are published: every one is acknowledged by a
    broker in the end, nothing is evicted, and the outbox is empty."""
    broker = Broker(tmp_path).start()
    config = parse_config(f"device: {{id: f1}}\nstate_dir: {tmp_path}/state\n"
                          f"mqtt: {{port: {broker.port}, reconnect: {{initial: 1s, max: 1s}}}}\n")
    pub = MqttPublisher(config, None, lambda m: None, [])
    pub.start()
    try:
        assert pub.link.connected.wait(10)
        for i in range(1500):
            pub.publish(CameraEvent("new", f"ev-{i}", "porch", "motion", time.time()))
            if i % 400 == 399:
                assert pub.link.connected.wait(15)  # each kill hits an established connection
                broker.kill()
                time.sleep(0.3)
                broker.start()
            time.sleep(0.001)
        deadline = time.monotonic() + 60
        while len(pub.outbox) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(pub.outbox) == 0
        assert pub.sender.sent >= 1500
        assert pub.outbox.evicted == 0
        assert pub.link.connects >= 4
    finally:
        pub.stop()
        broker.stop()


def test_full_disk_keeps_events_in_memory_and_recovers(tmp_path: Path) -> None:
    """The outbox's database refuses writes (SQLite's real SQLITE_FULL, from a page limit): add() still
    succeeds, events wait in memory in order, a clear error is counted, and they go to disk when space returns."""
    box = Outbox(tmp_path / "o.db", max_events=10_000, ttl=3600)
    box.add(Message("t", b"first", durable=True))
    pages = box._db.execute("PRAGMA page_count").fetchone()[0]
    box._db.execute(f"PRAGMA max_page_count={pages}")
    for i in range(200):
        box.add(Message("t", b"x" * 500 + str(i).encode(), durable=True))
    assert box.disk_errors >= 1
    assert "full" in box.last_disk_error
    assert len(box) == 201
    assert box.flush_memory() == 0
    box._db.execute("PRAGMA max_page_count=1073741823")
    assert box.flush_memory() > 0
    box.close()
    reopened = Outbox(tmp_path / "o.db", max_events=10_000, ttl=3600)
    payloads = [p.message.payload for p in reopened.fetch_after(0, 1000)]
    assert payloads[0] == b"first"
    assert [int(p[500:]) for p in payloads[1:]] == list(range(200))
    reopened.close()


def test_wall_clock_jumps_do_not_expire_or_reorder_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NTP setting a Pi's clock forward 30 days (or back a day) doesn't expire what is waiting: ages run on
    the monotonic clock within a boot."""
    box = Outbox(tmp_path / "o.db", max_events=100, ttl=7 * 86400)
    for i in range(3):
        box.add(Message("t", str(i).encode(), durable=True))
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 30 * 86400)
    assert box.expire() == 0
    monkeypatch.setattr(time, "time", lambda: real() - 86400)
    box.add(Message("t", b"3", durable=True))
    assert box.expire() == 0
    assert [p.message.payload for p in box.fetch_after(0, 10)] == [b"0", b"1", b"2", b"3"]
    assert all(p.age() < 5 for p in box.fetch_after(0, 10))
    box.close()


def test_scheduling_ignores_wall_clock_jumps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deadlines, back-off and stall timeouts run on the monotonic clock: a wall clock jump changes nothing."""
    from edged.scheduling.policy import choose_next
    from edged.scheduling.triggers import Trigger

    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 10 * 86400)
    now = time.monotonic()
    trigger = Trigger(TriggerKind.MOTION, "porch", now, now + 20)
    assert choose_next({"porch": [trigger]}, time.monotonic(), 1.0, {}).run is trigger


def copy_sample(tmp_path: Path) -> Path:
    target = tmp_path / "clip.mp4"
    shutil.copy(SAMPLE, target)
    return target


def drain(source: VideoSource, seconds: float) -> int:
    n = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if source.frames.get(timeout=0.05) is not None:
                n += 1
        except QueueClosed:
            break
    return n


def play_to_end(clip: Path, seconds: float) -> tuple[int, VideoSource, list[Health]]:
    """Play a (damaged) file once, unpaced: frames read within `seconds`, the stopped source, its health."""
    states: list[Health] = []
    source = VideoSource(CameraConfig(id="c", url=str(clip), realtime=False, queue_size=4), on_health=states.append)
    source.start()
    try:
        return drain(source, seconds), source, states
    finally:
        source.stop()


def test_media_file_deleted_while_read_then_restored(tmp_path: Path) -> None:
    """A looping file removed mid-play: the source reports why and retries; put back, it plays again."""
    clip = copy_sample(tmp_path)
    states: list[Health] = []
    cam = CameraConfig(id="c", url=str(clip), loop=True, realtime=False, queue_size=4,
                       reconnect=BackoffConfig(initial=0.1, max=0.3))
    source = VideoSource(cam, on_health=states.append)
    source.start()
    try:
        assert drain(source, 0.5) > 0
        clip.unlink()
        deadline = time.monotonic() + 30
        while not any("file not found" in h.reason for h in states) and time.monotonic() < deadline:
            drain(source, 0.2)
        assert any(h.state is SourceState.RECONNECTING and "file not found" in h.reason for h in states)
        shutil.copy(SAMPLE, clip)
        mark = len(states)
        deadline = time.monotonic() + 10
        while not any(h.state is SourceState.STREAMING for h in states[mark:]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert drain(source, 0.5) > 0
    finally:
        source.stop()


def test_truncated_file_plays_what_it_has(tmp_path: Path) -> None:
    """A file cut off half-way (a recording interrupted) plays up to the cut and ends cleanly."""
    clip = copy_sample(tmp_path)
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 2])
    frames, _, states = play_to_end(clip, 10)
    assert 10 < frames < 150  # some, not the whole 30 s at 5 fps
    assert SourceState.ENDED in [h.state for h in states]


def test_corrupt_h264_data_is_survived(tmp_path: Path) -> None:
    """Garbage written over two stretches of an H.264 stream (1 s keyframe interval, like a camera's):
    the damage is skipped to the next decodable frame, the rest plays, the file ends cleanly."""
    from tests.support.media import make_clip

    clip = make_clip(tmp_path / "clip.mp4", seconds=10.0, audio=False)  # 30 fps, a keyframe every second
    data = bytearray(clip.read_bytes())
    rng = np.random.default_rng(0)
    for start in (len(data) // 4, len(data) // 2):
        data[start:start + 20000] = rng.integers(0, 256, 20000, dtype=np.uint8).tobytes()
    clip.write_bytes(bytes(data))
    frames, source, states = play_to_end(clip, 15)
    assert 28 <= frames < 50  # of 50 at 5 fps: each damaged stretch costs up to its GOPs, the rest plays
    assert source.stats.decode_errors >= 2
    assert SourceState.ENDED in [h.state for h in states]


@pytest.mark.slow
def test_missing_or_corrupt_model_bundle_is_one_clear_line_and_the_rest_runs(tmp_path: Path, broker: Broker) -> None:
    """A missing bundle and a bundle with a wrong hash: the daemon names the file and the fix, and keeps
    running its cameras and microphones."""
    bundle = tmp_path / "bundle"
    shutil.copytree(ROOT / "tests" / "fixtures" / "glm-edge-v-tiny", bundle)
    victim = next(p for p in sorted(bundle.iterdir()) if p.suffix == ".onnx")
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    for path, expect in ((tmp_path / "nowhere", "edged models pull"), (bundle, victim.name)):
        config = tmp_path / "edged.yaml"
        config.write_text(f"device: {{id: f1}}\nstate_dir: {tmp_path / 'state'}\nlog: {{format: json}}\n"
                          f"mqtt: {{port: {broker.port}}}\nmodels: {{captioner: {{path: {path}}}}}\n"
                          f"cameras:\n  a: {{url: {SAMPLE}, loop: true}}\n")
        daemon = DaemonProcess(config)
        try:
            line = daemon.wait_log("captioner_unavailable")
            assert expect in json.dumps(line)
            daemon.wait_log("source_connected")
            assert daemon.proc.poll() is None
        finally:
            assert daemon.stop() == 0


@pytest.mark.slow
def test_a_daemon_killed_mid_stream_delivers_its_backlog_after_restart(tmp_path: Path, broker: Broker) -> None:
    """kill -9 of the daemon while its broker is away: after a restart the events it had committed arrive."""
    config = write_config(tmp_path / "edged.yaml", broker.port, f"  a: {{url: {SAMPLE}, loop: true}}\n")
    daemon = DaemonProcess(config)
    try:
        daemon.wait_log("mqtt_connected")
        broker.stop()
        daemon.wait_log("mqtt_disconnected", timeout=20)
        time.sleep(7)  # motion in the sample starts at 4.4 s: an event is committed while the broker is down
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(10)
    finally:
        daemon.log.close()
    db = sqlite3.connect(tmp_path / "state" / "outbox.db")
    backlog = [json.loads(row[0]) for row in db.execute("SELECT payload FROM outbox WHERE topic LIKE '%/events'")]
    db.close()
    assert backlog, "nothing was committed while the broker was down"
    broker.start()
    sub = Subscriber(broker.port, ["edged/f1/events"]).start()
    again = DaemonProcess(config)
    try:
        want = {e["id"] for e in backlog}
        sub.wait_for(lambda m: want <= {json.loads(x.payload)["id"] for x in m}, timeout=30)
        replayed = [json.loads(m.payload) for m in sub.messages if json.loads(m.payload)["id"] in want]
        assert all(p["replayed"] for p in replayed)
    finally:
        assert again.stop() == 0
        sub.stop()


def test_audio_source_that_closes_is_reported_and_resumes(tmp_path: Path) -> None:
    """Covered in test_audio_sources: a FIFO whose writer closes stalls (reported) and resumes; stdin that
    closes ends. Here: a media file of a microphone deleted while read is retried and reported."""
    from edged.config.schema import MicrophoneConfig
    from edged.sources.audio.source import AudioSource
    from tests.support.media import make_tone_wav

    wav = make_tone_wav(tmp_path / "mic.wav", seconds=1.0)
    states: list[Health] = []
    mic = MicrophoneConfig(id="m", device=str(wav), loop=True, realtime=True,
                           reconnect=BackoffConfig(initial=0.1, max=0.2))
    source = AudioSource(mic, on_health=states.append)
    source.start()
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set():
            try:
                source.chunks.get(timeout=0.1)
            except QueueClosed:
                return

    reader = threading.Thread(target=consume)
    reader.start()
    try:
        time.sleep(0.3)
        wav.unlink()
        deadline = time.monotonic() + 5
        while not any("file not found" in h.reason for h in states) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(h.state is SourceState.RECONNECTING and "file not found" in h.reason for h in states)
    finally:
        stop.set()
        source.stop()
        reader.join(2)
