"""The HTTP API against the real daemon process, through the client libraries users have: the `openai`
package (what Frigate's provider and most tools use) and the `ollama` package (what Home Assistant's
Ollama integration uses). The daemon runs the tiny GLM-Edge-V bundle (random weights: the words are
nonsense, every stage is real), a camera playing the porch sample with its microphone, a real
Mosquitto, and the endpoint on loopback with a bearer token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.api.chat import NO_IMAGE_ANSWER
from tests.support.api import QUESTION, SAMPLE, burst, data_url, new_latencies, porch_jpeg
from tests.support.api import openai_messages as support_messages
from tests.support.broker import Broker, free_port
from tests.support.daemon import DaemonProcess
from tests.support.mqtt import Subscriber

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "glm-edge-v-tiny"
TOKEN = "test-token-7f3a"


JPEG = porch_jpeg()
DATA_URL = data_url(JPEG)


def openai_messages(url: str = DATA_URL, question: str = QUESTION) -> Any:
    return support_messages(url, question)


@dataclass
class Live:
    daemon: DaemonProcess
    sub: Subscriber
    port: int
    model: str
    clients: list[Any] = field(default_factory=list)  # closed when the module's daemon stops

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def openai(self, key: str = TOKEN) -> openai.OpenAI:
        """The OpenAI client as Frigate configures it (base_url, api_key); no retries, so a refusal shows."""
        client = openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=60)
        self.clients.append(client)
        return client

    def ollama(self, key: str = TOKEN) -> ollama.Client:
        """The Ollama client as Home Assistant's integration makes it (host, bearer header)."""
        client = ollama.Client(host=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def answers_mqtt(self) -> bool:
        """The daemon's MQTT side still works: a health request is answered."""
        transaction = f"t-{time.monotonic_ns()}"
        self.sub.publish("edged/api/request/health", json.dumps({"transaction": transaction}))
        self.sub.wait_for(lambda msgs: any(m.topic == "edged/api/response/health" and transaction.encode() in m.payload
                                           for m in msgs), timeout=15)
        return True


def write_config(tmp: Path, broker: Broker, port: int, extra: str = "") -> Path:
    (tmp / "api.token").write_text(TOKEN + "\n")
    config = tmp / "edged.yaml"
    config.write_text(
        f"device: {{id: api}}\nstate_dir: {tmp / 'state'}\nlog: {{level: info, format: json}}\n"
        f"mqtt: {{port: {broker.port}, stats_interval: 1s}}\n"
        f"models: {{captioner: {{path: {TINY}, max_new_tokens: 16}}}}\n"
        f"api: {{listen: 127.0.0.1:{port}, token_file: {tmp / 'api.token'}{extra}}}\n"
        # off_delay 3s: every pass of the looping clip starts motion twice (the person, the car)
        f"cameras:\n  porch: {{url: {SAMPLE}, loop: true, motion: {{off_delay: 3s}},\n"
        "    microphone: {device: camera, loop: true}}\n")
    return config


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("api-live")
    broker = Broker(tmp).start()
    port = free_port()
    sub = Subscriber(broker.port, ["edged/api/#"]).start()
    daemon = DaemonProcess(write_config(tmp, broker, port))
    try:
        daemon.wait_log("api_listening", timeout=60)
        sub.wait_topic("edged/api/porch/status", b"online", timeout=30)
        model = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=10).json()["data"][0]["id"]
        live = Live(daemon, sub, port, model)
        yield live
        live.close()
    finally:
        code = daemon.stop()
        sub.stop()
        broker.stop()
    assert code == 0


# -- answers -------------------------------------------------------------------------------------------
def test_the_openai_client_gets_a_caption(live: Live) -> None:
    """`chat.completions.create` with a data-URL image, as Frigate sends it: text comes back, from the model
    edged runs, at most max_tokens long, answered greedily (system_fingerprint says so)."""
    client = live.openai()
    assert [m.id for m in client.models.list()] == [live.model]
    assert live.model.startswith("glm-edge-v-tiny")
    reply = client.chat.completions.create(model="gpt-4o", messages=openai_messages(), max_tokens=12,  # type: ignore[arg-type]
                                           temperature=0.7)
    text = reply.choices[0].message.content
    assert text and text.strip() == text
    assert reply.model == live.model
    assert reply.usage is not None and 1 <= reply.usage.completion_tokens <= 12
    assert reply.system_fingerprint is not None and reply.system_fingerprint.endswith("greedy")


def test_streaming_with_the_openai_client_writes_the_same_answer(live: Live) -> None:
    """`stream=True`: server-sent chunks (the first carries the role, the text comes piece by piece, a
    usage chunk when asked); joined, they are the answer the same request gets unstreamed."""
    client = live.openai()
    whole = client.chat.completions.create(model="m", messages=openai_messages(), max_tokens=12)  # type: ignore[arg-type]
    chunks = list(client.chat.completions.create(model="m", messages=openai_messages(), max_tokens=12,  # type: ignore[arg-type]
                                                 stream=True, stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len([p for p in pieces if p]) > 1
    assert "".join(pieces).strip() == whole.choices[0].message.content
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]


def test_the_ollama_client_lists_shows_and_answers_streamed_or_not(live: Live) -> None:
    """What Home Assistant's Ollama integration calls: the model list, then chat with base64 images,
    streamed (Ollama's default) or not; `generate` too. Same image, question and length: the same words
    as through the OpenAI dialect."""
    client = live.ollama()
    assert [m.model for m in client.list().models] == [live.model]
    assert "vision" in (client.show(live.model).capabilities or [])
    message = {"role": "user", "content": QUESTION, "images": [JPEG]}
    whole = client.chat(model=live.model, messages=[message], options={"num_predict": 12}, stream=False)
    assert whole.done and whole.message.content
    parts = list(client.chat(model=live.model, messages=[message], options={"num_predict": 12}, stream=True))
    assert len(parts) > 2 and parts[-1].done and parts[-1].eval_count == whole.eval_count
    assert "".join(p.message.content or "" for p in parts).strip() == whole.message.content
    generated = client.generate(model=live.model, prompt=QUESTION, images=[JPEG], options={"num_predict": 12})
    assert generated.response == whole.message.content
    via_openai = live.openai().chat.completions.create(model="m", messages=openai_messages(), max_tokens=12)  # type: ignore[arg-type]
    assert via_openai.choices[0].message.content == whole.message.content


def test_a_request_without_an_image_is_told_what_edged_needs(live: Live) -> None:
    """LLM Vision's connection check ("Hi", no image) gets a 200 that says edged answers about images,
    without a model run."""
    reply = live.openai().chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content == NO_IMAGE_ANSWER


# -- refusals ------------------------------------------------------------------------------------------
def test_a_wrong_or_missing_token_is_401(live: Live) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        live.openai(key="wrong").chat.completions.create(model="m", messages=openai_messages())  # type: ignore[arg-type]
    assert info.value.status_code == 401
    assert "bearer token" in str(info.value)
    with pytest.raises(ollama.ResponseError) as oll:
        live.ollama(key="wrong").list()
    assert oll.value.status_code == 401
    bare = httpx.get(live.url + "/api/tags", timeout=10)
    assert (bare.status_code, bare.headers["WWW-Authenticate"]) == (401, 'Bearer realm="edged"')
    assert "bearer token" in bare.json()["error"]


def test_a_20_mb_body_is_413_naming_the_limit(live: Live) -> None:
    big = "data:image/jpeg;base64," + "A" * (20 * 1024 * 1024)
    with pytest.raises(openai.APIStatusError) as info:
        live.openai().chat.completions.create(model="m", messages=openai_messages(big))  # type: ignore[arg-type]
    assert info.value.status_code == 413
    assert "api.max_body_mb" in str(info.value)
    with pytest.raises(ollama.ResponseError) as oll:
        live.ollama().chat(model=live.model, messages=[{"role": "user", "content": "?", "images": ["A" * (20 << 20)]}])
    assert oll.value.status_code == 413


def test_a_non_image_is_400_naming_where(live: Live) -> None:
    not_jpeg = "data:image/jpeg;base64," + base64.b64encode(b"%PDF-1.7 this is a document").decode()
    with pytest.raises(openai.BadRequestError) as info:
        live.openai().chat.completions.create(model="m", messages=openai_messages(not_jpeg))  # type: ignore[arg-type]
    assert "messages[0].content[1]: not an image edged can read" in str(info.value)
    with pytest.raises(openai.BadRequestError):
        live.openai().chat.completions.create(model="m", messages=openai_messages("data:text/plain;base64,aGk="))  # type: ignore[arg-type]
    with pytest.raises(ollama.ResponseError) as oll:
        live.ollama().chat(model=live.model, messages=[{"role": "user", "content": "?", "images": [b"plain text"]}])
    assert oll.value.status_code == 400 and "messages[0].images[0]" in str(oll.value)


# -- hostile input -------------------------------------------------------------------------------------
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
base64ish = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=!-_ \n", max_size=60)
data_urls = st.builds(lambda mime, enc, data: f"data:{mime}{enc},{data}",
                      st.sampled_from(["image/jpeg", "image/png", "text/html", "", "image/", "IMAGE/JPEG;x=1"]),
                      st.sampled_from([";base64", "", ";base32", ";BASE64"]), base64ish)
urls = data_urls | st.sampled_from(["", "http://127.0.0.1:1/x.jpg", "file:///etc/shadow", "javascript:alert(1)",
                                    "ftp://a/b", "data:", "https://"]) | st.text(max_size=30)
parts = st.one_of(st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries(
                      {"url": urls | json_values})}),
                  st.fixed_dictionaries({"type": st.just("image_url"), "image_url": urls | json_values}),
                  st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=30) | json_values}),
                  st.fixed_dictionaries({"type": json_values}), json_values)
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "x"]) | json_values,
                                           "content": st.lists(parts, max_size=3) | json_values,
                                           "images": st.lists(base64ish | urls | json_values, max_size=2)
                                           | json_values}), max_size=3) | json_values
bodies = st.fixed_dictionaries({"messages": messages},
                               optional={"stream": json_values, "max_tokens": json_values, "model": json_values,
                                         "n": json_values, "options": json_values, "prompt": json_values,
                                         "images": json_values, "temperature": json_values, "format": json_values})
raw = st.one_of(
    bodies.map(lambda b: json.dumps(b).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.integers(1, 200_000).map(lambda n: b"[" * n),
    st.integers(1, 50_000).map(lambda n: b'{"messages":' * n),
    st.just(b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "data:image/png;base64,'
            + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64) + b'"}]}]}'),
)
paths = st.sampled_from(["/v1/chat/completions"] * 4 + ["/api/chat"] * 3 + ["/api/generate"] * 2
                        + ["/api/show", "/v1/models/x", "/api/pull", "/v1/chat/completions/"])


def test_hostile_input_is_always_a_4xx_json_answer_and_the_daemon_goes_on(live: Live) -> None:
    """Hundreds of hostile bodies (deep, huge, binary, mistyped at every position, bad base64, bad data
    URLs, stray endpoints): each is answered within seconds with JSON, never a 5xx; afterwards the
    endpoint still captions, MQTT still answers, and no request failed inside edged."""
    client = httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15)
    live.clients.append(client)
    seen: dict[int, int] = {}

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)
    @given(path=paths, body=raw, content_type=st.sampled_from(["application/json", "text/plain", "", "x/y; a=b"]))
    def attack(path: str, body: bytes, content_type: str) -> None:
        response = client.post(path, content=body, headers={"Content-Type": content_type} if content_type else {})
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (response.status_code, response.text[:300])
        if response.headers["Content-Type"].startswith("application/x-ndjson"):  # Ollama's stream: JSON lines
            assert [json.loads(line) for line in response.text.splitlines()][-1]["done"] is True
            return
        payload = response.json()
        if response.status_code >= 400:
            assert "error" in payload, payload

    attack()
    huge = client.post("/v1/chat/completions", content=b'{"messages": "' + b"x" * (17 << 20) + b'"}')
    assert huge.status_code == 413 and "api.max_body_mb" in huge.text
    print(f"\nhostile outcomes: {seen}")
    assert set(seen) - {200, 400, 404, 405, 413} == set(), seen
    assert live.daemon.proc.poll() is None
    assert live.answers_mqtt()
    assert live.openai().chat.completions.create(model="m", messages=openai_messages()).choices[0].message.content  # type: ignore[arg-type]
    failures = [line for line in live.daemon.lines()
                if line.get("event") in {"api_request_failed", "api_crashed", "main_loop_step_failed", "non_json_line"}
                or line.get("level") in {"critical", "exception"}]
    assert failures == []


def test_neither_the_token_nor_an_image_is_logged_or_stored(live: Live) -> None:
    """After every request above: the token and the images' bytes appear in no log line and no file in
    the state directory, and the only image files edged wrote are the history's snapshots of its own
    camera (an API caller's image is answered, never remembered)."""
    live.openai().chat.completions.create(model="m", messages=openai_messages())  # type: ignore[arg-type]
    log = live.daemon.log_path.read_text(errors="replace")
    image_piece = DATA_URL[-200:-100]  # a stretch of the image's base64
    assert TOKEN not in log and image_piece not in log
    state = live.daemon.log_path.parent / "state"
    files = [p for p in state.rglob("*") if p.is_file()]
    images = [p for p in files if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")]
    snapshots = state / "history" / "snapshots"
    assert all(p.is_relative_to(snapshots) and p.name.startswith("porch-") for p in images), images
    for path in files:
        data = path.read_bytes()
        assert TOKEN.encode() not in data and image_piece.encode() not in data, path


# -- a burst while the camera works ------------------------------------------------------------------------
@pytest.mark.slow
def test_a_burst_of_50_callers_is_answered_or_refused_while_motion_events_keep_coming(live: Live) -> None:
    """50 concurrent callers (waiting Retry-After when refused) for a whole loop of the porch clip (a
    keyword, two motion starts): every call is answered (200) or refused with 429/503 and a Retry-After,
    none hangs; the camera's motion and keyword events keep arriving and its motion captions are still
    published (turn-taking). The events' trigger -> `new` latency is printed next to the loop before
    (`python -m benchmarks api` records them)."""
    quiet_from = time.time()
    time.sleep(31)  # a whole loop of the clip without the API
    quiet_to = burst_from = time.time()
    counts = asyncio.run(burst(live.url, TOKEN, DATA_URL, 31, 50))
    burst_to = time.time()
    lines = live.daemon.lines()
    quiet, busy = new_latencies(lines, quiet_from, quiet_to), new_latencies(lines, burst_from, burst_to)
    print(f"\nburst outcomes: {counts}\ntrigger -> new ms without: {quiet}, with the burst: {busy}")
    assert set(counts) <= {"200", "429", "503"}, counts
    assert counts.get("200", 0) >= 1 and counts.get("429", 0) >= 1
    assert busy.get("motion"), "no motion event was opened during the burst"
    captions = [json.loads(m.payload) for m in live.sub.on("edged/api/porch/caption")]
    during = [c["trigger"] for c in captions if burst_from <= c["published_ts"] <= burst_to]
    assert "motion" in during, f"the camera's motion captions starved behind the API: {during}"
    assert live.answers_mqtt()
    stats = live.sub.on("edged/api/stats")
    api = json.loads(stats[-1].payload)["system"]["api"]
    assert api["busy_429"] >= counts["429"] and api["in_flight"] <= 2


# -- other daemons -------------------------------------------------------------------------------------
def test_without_a_model_the_endpoint_answers_503_with_retry_after_and_stops_in_time(tmp_path: Path) -> None:
    """No model loaded: the lists are empty, a chat is 503 with Retry-After (never a hang); SIGTERM ends
    the daemon within its 5 s budget with the endpoint running."""
    broker = Broker(tmp_path).start()
    port = free_port()
    config = write_config(tmp_path, broker, port)
    config.write_text(config.read_text().replace(f"{{path: {TINY}, max_new_tokens: 16}}", "{backend: none}"))
    daemon = DaemonProcess(config)
    try:
        daemon.wait_log("api_listening", timeout=60)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=TOKEN, max_retries=0, timeout=30)
        assert client.models.list().data == []
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="m", messages=openai_messages())  # type: ignore[arg-type]
        assert info.value.status_code == 503
        assert info.value.response.headers["Retry-After"] == "60"
        assert "edged models pull" in str(info.value)
        client.close()
        started = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(10) == 0
        assert time.monotonic() - started < 5.0
    finally:
        daemon.stop()
        broker.stop()


def test_a_reload_that_changes_the_token_restarts_the_endpoint(tmp_path: Path) -> None:
    """SIGHUP with a new token file content: the endpoint restarts; the old token is refused, the new one
    answers. A reload that leaves the api section alone keeps the endpoint as it is."""
    broker = Broker(tmp_path).start()
    port = free_port()
    config = write_config(tmp_path, broker, port)
    daemon = DaemonProcess(config)
    try:
        daemon.wait_log("api_listening", timeout=60)
        (tmp_path / "api.token").write_text("the-new-token\n")
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_log("config_reloaded", timeout=30)
        assert len([line for line in daemon.lines() if line.get("event") == "api_listening"]) == 2
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="the-new-token", max_retries=0) as new:
            assert new.chat.completions.create(model="m", messages=openai_messages()).choices[0].message.content  # type: ignore[arg-type]
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=TOKEN, max_retries=0) as old, \
                pytest.raises(openai.AuthenticationError):
            old.models.list()
        daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while len([line for line in daemon.lines() if line.get("event") == "config_reloaded"]) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert len([line for line in daemon.lines() if line.get("event") == "api_listening"]) == 2
    finally:
        daemon.stop()
        broker.stop()


def test_a_lan_address_without_a_token_is_refused_before_anything_starts(tmp_path: Path) -> None:
    config = tmp_path / "edged.yaml"
    config.write_text("models: {captioner: {backend: none}}\napi:\n  listen: 0.0.0.0:11435\n")
    out = subprocess.run([sys.executable, "-m", "edged", "run", "-c", str(config)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2
    assert f"{config}:3 api.listen: 0.0.0.0 is reachable from other machines: set token_file" in out.stderr



def test_a_port_in_use_is_logged_and_everything_else_runs(tmp_path: Path) -> None:
    """Something else holds the API's port: edged says so in one line (`api_start_failed` with the reason),
    the cameras and MQTT run on, and the stats show the endpoint `failed` with why."""
    broker = Broker(tmp_path).start()
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    daemon = DaemonProcess(write_config(tmp_path, broker, port))
    sub = Subscriber(broker.port, ["edged/api/#"]).start()
    try:
        failed = daemon.wait_log("api_start_failed", timeout=60)
        assert f"cannot listen on 127.0.0.1:{port}" in str(failed["reason"])
        sub.wait_topic("edged/api/porch/status", b"online", timeout=30)
        stats = json.loads(sub.wait_topic("edged/api/stats", timeout=15).payload)
        assert stats["system"]["api"]["state"] == "failed"
        assert daemon.proc.poll() is None
    finally:
        holder.close()
        sub.stop()
        daemon.stop()
        broker.stop()
