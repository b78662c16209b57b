"""Privacy by construction: the privacy switch, masks before inference, secrets, no listening sockets."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil

from edged.analysis.frame_analysis import FrameAnalysis
from edged.config import parse_config
from edged.events import CameraEvent, Caption, Event, Snapshot, TriggerKind
from edged.inference.protocol import CaptionResult
from edged.pipeline import Pipeline
from edged.sources.frame import Frame
from tests.support.broker import Broker
from tests.support.daemon import DaemonProcess
from tests.support.model_server import HeldStream
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


def test_privacy_on_cancels_the_running_caption_and_the_queued_question(tmp_path: Path, broker: Broker) -> None:
    """A `caption_now` is mid-caption and an `ask` waits behind it when privacy goes on: the running caption
    is cancelled between tokens (the model server sees the client hang up), both requesters get an error
    saying privacy cancelled their request, and nothing captured before the switch is published after it:
    no caption of an earlier frame, no snapshot.

    The model is edged's real `remote` backend talking to a test server (tests/support/model_server.py)
    that holds its answer after the first token until the test has switched privacy on: the real tiny
    model finishes in milliseconds, so it could not be caught mid-caption on cue."""
    with HeldStream().serving() as model:
        config = tmp_path / "edged.yaml"
        remote = f"{{backend: remote, remote: {{url: '{model.url}', model: held, retries: 0}}}}"
        config.write_text(f"device: {{id: p1}}\nstate_dir: {tmp_path / 'state'}\nlog: {{format: json}}\n"
                          f"mqtt: {{port: {broker.port}, stats_interval: 1s}}\nmodels: {{captioner: {remote}}}\n"
                          f"cameras:\n  porch: {{url: {SAMPLE}, loop: true, captions: {{on: [request]}}}}\n")
        sub = Subscriber(broker.port, ["edged/p1/#"]).start()
        daemon = DaemonProcess(config)
        try:
            sub.wait_for(lambda _m: (frames_of(sub, "porch") or 0) > 0, timeout=30)
            sub.publish("edged/p1/request/caption_now", json.dumps({"camera": "porch", "transaction": "cap"}))
            assert model.started.wait(30), "the caption never reached the model"
            sub.publish("edged/p1/request/ask", json.dumps({"camera": "porch", "question": "Anyone there?",
                                                            "transaction": "ask"}))
            switched = time.time()
            sub.publish("edged/p1/porch/privacy/set", "ON")
            on = sub.wait_topic("edged/p1/porch/privacy/state", b"ON")
            model.release()  # the model would now write the rest of its caption
            answers = {json.loads(m.payload)["transaction"]: json.loads(m.payload) for m in sub.wait_for(
                lambda m: len([x for x in m if x.topic.startswith("edged/p1/response/")]) >= 2, timeout=20)
                if m.topic.startswith("edged/p1/response/")}
            deadline = time.monotonic() + 10
            while not model.hung_up and model.completed == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)  # anything still on its way would have arrived by now
        finally:
            assert daemon.stop() == 0
            sub.stop()
    for transaction in ("cap", "ask"):
        assert answers[transaction]["status"] == "error", answers[transaction]
        assert "privacy" in answers[transaction]["error"], answers[transaction]
    assert model.completed == 0 and model.hung_up, "the running caption was not cancelled"
    captions = [json.loads(m.payload) for m in sub.on("edged/p1/porch/caption")]
    assert [c for c in captions if c["published_ts"] >= switched and c["frame_ts"] < switched] == []
    after = sub.messages[sub.messages.index(on) + 1:]
    assert [m for m in after if m.topic == "edged/p1/porch/snapshot"] == []


class HeldTokens:
    """The real tiny GLM-Edge-V model, held after the first token of its first caption.

    `caption()` runs the real model with an `on_token` callback (the Captioner protocol's streaming hook,
    which the model calls between tokens, just before it checks `cancel`). For the first token of the
    first caption the callback sets `mid_caption` and waits for `release`: the test can switch privacy
    on while the model is provably mid-caption. The model itself, its cancel check and its result are
    untouched; the real model is otherwise far too fast to catch mid-run."""

    def __init__(self) -> None:
        from tests.glm_fixture import captioner

        self.model = captioner()
        self.name = self.model.name
        self.mid_caption = threading.Event()
        self.release = threading.Event()
        self.results: list[CaptionResult] = []

    def caption(self, image: np.ndarray, prompt: str, *, max_new_tokens: int | None = None,
                deadline: float | None = None, cancel: threading.Event | None = None,
                on_token: Callable[[str], None] | None = None) -> CaptionResult:
        def hold(piece: str) -> None:
            if not self.mid_caption.is_set():
                self.mid_caption.set()
                self.release.wait(60)
            if on_token is not None:
                on_token(piece)

        result = self.model.caption(image, prompt, max_new_tokens=max_new_tokens, deadline=deadline, cancel=cancel,
                                    on_token=hold)
        self.results.append(result)
        return result

    def close(self) -> None:
        self.model.close()


def test_privacy_on_cancels_the_real_model_mid_caption_and_publishes_nothing_from_before() -> None:
    """The real pipeline: the porch sample with its microphone; "okay nabu" at 2.5 s opens a keyword event
    and starts a caption on the real tiny model (held mid-caption, see `HeldTokens`). Privacy ON: the model
    run ends "cancelled" between tokens, and from the switch on nothing is published from before it: no
    caption, no snapshot, no `update` of the event (its `end` may follow). After privacy OFF, a caption
    describes a frame captured after the camera came back."""
    config = parse_config(f"cameras:\n  porch: {{url: {SAMPLE}, loop: true, captions: {{on: [keyword, request]}},\n"
                          "    microphone: {device: camera, loop: true}}\n")
    model = HeldTokens()
    published: list[Event] = []
    lock = threading.Lock()

    def publish(event: Event) -> None:
        with lock:
            published.append(event)

    pipeline = Pipeline(config, publish, lambda _cam: None, captioner=model)
    pipeline.start()
    try:
        assert model.mid_caption.wait(60), "no keyword caption started"
        with lock:
            mark = len(published)
        pipeline.set_privacy("porch", True)
        model.release.set()
        wait_until(lambda: len(model.results) == 1)
        time.sleep(0.5)  # the scheduler sees the ended job within a tick; give it several
        with lock:
            before, after = published[:mark], published[mark:]
        keyword_event = next(e for e in before if isinstance(e, CameraEvent) and e.trigger == "keyword")
        assert model.results[0].finish_reason == "cancelled"
        assert [e for e in after if isinstance(e, Caption | Snapshot)] == []
        assert [e for e in after if isinstance(e, CameraEvent) and e.type in ("new", "update")] == []
        assert [e.type for e in after if isinstance(e, CameraEvent) and e.id == keyword_event.id] in ([], ["end"])

        back = time.time()
        pipeline.set_privacy("porch", False)
        wait_until(lambda: pipeline.histories["porch"].latest() is not None)
        answers: list[tuple[CaptionResult | None, str | None]] = []
        pipeline.scheduler.trigger(pipeline.scheduler.make_trigger(TriggerKind.REQUEST, "porch",
                                                                   on_done=lambda _t, r, e: answers.append((r, e))))
        wait_until(lambda: bool(answers))
        assert answers[0][1] is None, answers[0]
        with lock:
            captions = [e for e in published[mark:] if isinstance(e, Caption)]
        assert captions and all(c.frame_ts >= back for c in captions)
    finally:
        pipeline.stop()
        model.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
