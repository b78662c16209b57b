"""The daemon as a real process: start-up, signals, reload, sd_notify, commands over a real broker."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.daemon import DaemonProcess
from tests.support.mqtt import Received, Subscriber


def write_config(path: Path, port: int, clip: Path, cameras: str = "") -> Path:
    path.write_text(
        f"device: {{id: d1}}\nstate_dir: {path.parent / 'state'}\nlog: {{level: debug, format: json}}\n"
        f"mqtt: {{port: {port}, stats_interval: 1s, reconnect: {{initial: 1s, max: 1s}}}}\n"
        "models: {captioner: {backend: none}}\n"
        f"cameras:\n  porch: {{url: {clip}, loop: true, microphone: {{device: camera, loop: true}}}}\n{cameras}")
    return path


@pytest.fixture
def daemon_config(tmp_path: Path, broker: Broker, clip: Path) -> Path:
    return write_config(tmp_path / "edged.yaml", broker.port, clip)


@pytest.fixture
def daemon(daemon_config: Path) -> Iterator[DaemonProcess]:
    d = DaemonProcess(daemon_config)
    yield d
    d.stop()


def test_sigterm_stops_everything_within_five_seconds(daemon: DaemonProcess, broker: Broker) -> None:
    """SIGTERM: exit status 0 within 5 s, `offline` published, every log line JSON."""
    sub = Subscriber(broker.port, ["edged/d1/#"]).start()
    try:
        sub.wait_topic("edged/d1/porch/status", b"online", timeout=20)
        sub.wait_topic("edged/d1/porch_mic/status", b"online", timeout=20)
        started = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(10) == 0
        assert time.monotonic() - started < 5.0
        sub.wait_topic("edged/d1/available", b"offline")
    finally:
        sub.stop()
    lines = daemon.lines()
    assert not [line for line in lines if line["event"] == "non_json_line"]
    assert any(line["event"] == "edged_stopped" for line in lines)
    camera_lines = [line for line in lines if line["event"] == "source_connected" and "camera" in line]
    assert camera_lines[0]["camera"] == "porch"  # every line of a stream carries its id


def test_stats_are_published_periodically(daemon: DaemonProcess, broker: Broker) -> None:
    """`stats` arrive every stats_interval with per-source figures."""
    sub = Subscriber(broker.port, ["edged/d1/stats"]).start()
    try:
        msgs = sub.wait_for(lambda m: len(m) >= 3, timeout=20)
        stats = json.loads(msgs[-1].payload)
        porch = stats["sources"]["porch"]
        assert porch["analysed_fps"] > 0
        for key in ("input_fps", "dropped", "reconnects", "stalls", "last_frame_age_s"):
            assert key in porch
        assert stats["system"]["rss_mb"] > 0
    finally:
        sub.stop()


def test_sighup_reload_applies_a_good_config_and_keeps_a_bad_one(daemon: DaemonProcess, daemon_config: Path,
                                                                 broker: Broker, clip: Path) -> None:
    """A valid new config adds a camera; an invalid one is refused with the reason and nothing changes."""
    sub = Subscriber(broker.port, ["edged/d1/#"]).start()
    try:
        sub.wait_topic("edged/d1/porch/status", b"online", timeout=20)
        write_config(daemon_config, broker.port, clip, f"  yard: {{url: {clip}, loop: true}}\n")
        daemon.proc.send_signal(signal.SIGHUP)
        sub.wait_topic("edged/d1/yard/status", b"online", timeout=20)
        daemon.wait_log("config_reloaded")
        daemon_config.write_text(daemon_config.read_text().replace("stats_interval: 1s", "stats_interval: -1s"))
        daemon.proc.send_signal(signal.SIGHUP)
        failed = daemon.wait_log("config_reload_failed")
        assert "mqtt.stats_interval" in json.dumps(failed["problems"])
        assert daemon.proc.poll() is None
        count = len(sub.on("edged/d1/stats"))
        sub.wait_for(lambda m: len([x for x in m if x.topic == "edged/d1/stats"]) > count + 1, timeout=10)
    finally:
        sub.stop()


def test_a_reload_whose_pipeline_fails_to_start_rolls_back(daemon: DaemonProcess, daemon_config: Path,
                                                            broker: Broker, clip: Path, tmp_path: Path) -> None:
    """A config that validates but cannot start (a keyword model whose .json is not a microWakeWord config,
    found only when the model loads): the daemon says why, goes back to the running config, and keeps
    answering and streaming. The first release died here."""
    sub = Subscriber(broker.port, ["edged/d1/#"]).start()
    try:
        sub.wait_topic("edged/d1/porch_mic/status", b"online", timeout=20)
        (tmp_path / "mine.json").write_text('{"micro": {}}')
        (tmp_path / "mine.tflite").write_bytes(b"not used: the .json is read first")
        good = daemon_config.read_text()
        daemon_config.write_text(good.replace("models: {captioner: {backend: none}}",
                                              "models: {captioner: {backend: none}, "
                                              f"wakeword: {{keywords: [{tmp_path / 'mine.tflite'}]}}}}"))
        online = len(sub.on("edged/d1/porch_mic/status"))
        daemon.proc.send_signal(signal.SIGHUP)
        failed = daemon.wait_log("config_reload_failed")
        assert "mine.json: not a microWakeWord model config" in str(failed["error"])
        assert failed["action"] == "keeping the running config"
        daemon.wait_log("config_rolled_back")
        sub.wait_for(lambda _m: any(m.payload == b"online" for m in sub.on("edged/d1/porch_mic/status")[online:]),
                     timeout=20)
        sub.publish("edged/d1/request/health", json.dumps({"transaction": "after"}))
        reply = json.loads(sub.wait_topic("edged/d1/response/health", timeout=10).payload)
        assert (reply["status"], reply["transaction"], reply["data"]["healthy"]) == ("ok", "after", True)
        assert daemon.proc.poll() is None
    finally:
        sub.stop()


def test_config_errors_exit_2_before_anything_starts(tmp_path: Path) -> None:
    """An invalid config: exit status 2, the problem on stderr, no thread started."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras:\n  a: {url: a.mp4, analysis_fps: -5}\n")
    out = subprocess.run([sys.executable, "-m", "edged", "run", "-c", str(bad)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2
    assert f"{bad}:2 cameras.a.analysis_fps: must be > 0 fps (got -5)" in out.stderr
    assert "video_source_starting" not in out.stderr


def test_broker_down_at_start_keeps_sources_running(tmp_path: Path, clip: Path) -> None:
    """No broker: the daemon still runs its sources and exits cleanly on SIGTERM."""
    config = write_config(tmp_path / "edged.yaml", 9, clip)
    d = DaemonProcess(config)
    try:
        d.wait_log("source_connected")
        d.wait_log("edged_running")
    finally:
        assert d.stop() == 0


def test_sd_notify_ready_watchdog_and_stopping(tmp_path: Path, daemon_config: Path) -> None:
    """Under systemd: READY=1 once started, WATCHDOG=1 pings while healthy, STOPPING=1 on the way out."""
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.5)
    d = DaemonProcess(daemon_config, env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "2000000"})
    messages: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum("WATCHDOG=1" in m for m in messages) < 2:
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                continue
        d.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("STOPPING=1" in m for m in messages):
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                continue
    finally:
        assert d.stop() == 0
        sock.close()
    ready = [m for m in messages if "READY=1" in m]
    assert ready
    assert "STATUS=1 cameras, 1 microphones" in ready[0]
    assert messages.index(ready[0]) < next(i for i, m in enumerate(messages) if "WATCHDOG=1" in m)
    assert any("STOPPING=1" in m for m in messages)


def test_requests_get_answers_and_bad_input_gets_errors(daemon: DaemonProcess, broker: Broker, tmp_path: Path) -> None:
    """health and config answer with the caller's transaction; malformed requests get an error and change nothing."""
    sub = Subscriber(broker.port, ["edged/d1/response/#", "edged/d1/porch/status"]).start()
    try:
        sub.wait_topic("edged/d1/porch/status", b"online", timeout=20)
        sub.publish("edged/d1/request/health", json.dumps({"transaction": "t-1"}))
        health = json.loads(sub.wait_topic("edged/d1/response/health").payload)
        assert (health["status"], health["transaction"]) == ("ok", "t-1")
        assert health["data"]["sources"]["porch"]["state"] == "streaming"
        sub.publish("edged/d1/request/config", json.dumps({"transaction": 7}))
        config = json.loads(sub.wait_topic("edged/d1/response/config").payload)
        assert config["data"]["device"]["id"] == "d1"
        sub.publish("edged/d1/request/health", b"{not json")
        sub.publish("edged/d1/request/selfdestruct", b"{}")
        sub.wait_for(lambda m: len([x for x in m if x.topic == "edged/d1/response/health"]) == 2)
        bad = json.loads(sub.on("edged/d1/response/health")[-1].payload)
        assert bad["status"] == "error"
        assert "not valid JSON" in bad["error"]
        unknown = json.loads(sub.wait_topic("edged/d1/response/selfdestruct").payload)
        assert "unknown command 'selfdestruct'" in unknown["error"]
        assert daemon.proc.poll() is None
    finally:
        sub.stop()


@pytest.mark.slow
def test_sigterm_with_four_cameras_and_stalled_streams_exits_within_the_budget_and_flushes(
        tmp_path: Path, broker: Broker) -> None:
    """4 cameras with their microphones: two play the porch sample (keywords and motion: durable events),
    two are RTSP streams whose server stalls before SIGTERM, so their capture threads sit in a blocking
    read that no stop can interrupt. The broker is frozen (SIGSTOP) so the durable events the daemon
    commits meanwhile wait in its outbox; SIGTERM comes once one is committed, the broker thaws 1 s
    later. The daemon must exit 0 within STOP_BUDGET (every thread is asked to stop at once, then all
    are waited for against one deadline), name the threads that did not stop in time, and deliver the
    events committed just before SIGTERM."""
    from edged.daemon import STOP_BUDGET
    from tests.support.rtsp import RtspServer

    sample = Path(__file__).resolve().parents[1] / "samples" / "porch.mp4"
    server = RtspServer(audio=True).start()
    played = "".join(f"  {c}: {{url: {sample}, loop: true, microphone: {{id: {c}_mic, device: camera, loop: true}}}}\n"
                     for c in ("a", "b"))
    # the longest read timeout there is: a read blocked since a stall must outlast the whole test (with
    # 20 s, a stream that stalled early under load could time out and end its read during the stop)
    stream = f"url: '{server.url}', read_timeout: 120s"
    streamed = "".join(f"  {c}: {{{stream}, microphone: {{id: {c}_mic, device: camera}}}}\n" for c in ("c", "d"))
    config = tmp_path / "edged.yaml"
    config.write_text(f"device: {{id: d1}}\nstate_dir: {tmp_path / 'state'}\nlog: {{level: info, format: json}}\n"
                      f"mqtt: {{port: {broker.port}, stats_interval: 1s}}\nmodels: {{captioner: {{backend: none}}}}\n"
                      f"cameras:\n{played}{streamed}")
    sub = Subscriber(broker.port, ["edged/d1/#"]).start()
    daemon = DaemonProcess(config)
    frozen = False
    try:
        for source in ("a", "b", "c", "d", "a_mic", "b_mic", "c_mic", "d_mic"):
            sub.wait_topic(f"edged/d1/{source}/status", b"online", timeout=60)
        sub.wait_topic("edged/d1/events", timeout=60)  # durable events flow
        server.stall()
        # both readers blocked, not still draining frames decoded before the stall (one that was stopped
        # in time then, and the stop was not the test of a blocked read)
        sub.wait_for(lambda m: _no_frames_for(m, ("c", "d"), 1.5), timeout=30)
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)
        frozen = True
        pending = wait_for_outbox_rows(tmp_path / "state" / "outbox.db", timeout=60)
        started = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        broker.proc.send_signal(signal.SIGCONT)
        frozen = False
        assert daemon.proc.wait(30) == 0
        elapsed = time.monotonic() - started
        want = {json.loads(p)["id"] for p in pending}
        sub.wait_for(lambda m: want <= {json.loads(x.payload).get("id") for x in m if x.topic == "edged/d1/events"},
                     timeout=10)
    finally:
        if frozen and broker.proc is not None:
            broker.proc.send_signal(signal.SIGCONT)
        daemon.stop()
        sub.stop()
        server.kill()
    print(f"stop with 4 cameras + 4 microphones (2 streams stalled): {elapsed:.2f} s")
    assert elapsed < STOP_BUDGET
    lines = daemon.lines()
    stopped = next(line for line in lines if line["event"] == "mqtt_stopped")
    assert stopped["flushed"] is True
    late = next(line for line in lines if line["event"] == "pipeline_threads_not_stopped")
    assert {"video-c", "video-d"} <= set(late["threads"])  # type: ignore[arg-type]


def _no_frames_for(messages: list[Received], cameras: tuple[str, ...], seconds: float) -> bool:
    """Whether the latest stats say none of `cameras` has had a frame for `seconds`."""
    stats = [m for m in messages if m.topic == "edged/d1/stats"]
    if not stats:
        return False
    sources = json.loads(stats[-1].payload)["sources"]
    return all((sources[c].get("last_frame_age_s") or 0.0) >= seconds for c in cameras)


def wait_for_outbox_rows(db: Path, timeout: float) -> list[bytes]:
    """Event payloads committed to the daemon's outbox and not yet acknowledged by the broker."""
    import sqlite3

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = sqlite3.connect(db, timeout=1.0)
        try:
            rows = [r[0] for r in conn.execute("SELECT payload FROM outbox WHERE topic LIKE '%/events'")]
        finally:
            conn.close()
        if rows:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"no event was committed to {db} within {timeout} s")
