"""The remote backend against a small OpenAI-compatible server on 127.0.0.1.

The server below stands in for a real llama.cpp server, Ollama or vLLM: it speaks the same
chat-completions protocol (plain JSON and server-sent-event streaming), and can be told to fail, stall
or refuse so the client's retries, timeouts and errors are exercised.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edged.config.schema import CaptionerConfig, RemoteConfig
from edged.inference.registry import load_captioner
from edged.inference.remote import RemoteCaptioner, RemoteError
from edged.inference.yesno import BadQuestion


class FakeServer:
    """State shared with the handler: a script of responses and a log of requests."""

    def __init__(self) -> None:
        self.script: list[str] = []  # per request: "ok", "503", "401", "stall", "garbage"
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.answer = ["A person ", "is at ", "the door."]
        self.top_logprobs: list[dict[str, Any]] = []  # sent when a request asks for logprobs
        self.refuse_logprobs = False  # answer such requests 400, as edged's own API does


def make_handler(state: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._send(200, {"object": "list", "data": [{"id": "glm-edge-v-5b"}]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append(body)
            state.headers.append(dict(self.headers))
            mode = state.script.pop(0) if state.script else "ok"
            if mode in ("503", "401"):
                self._send(int(mode), {"error": {"message": f"scripted {mode}"}})
            elif mode == "stall":
                time.sleep(1.5)
                self._send(200, {})
            elif mode == "garbage":
                self._raw(200, b"<html>not json</html>", "text/html")
            elif body.get("logprobs") and state.refuse_logprobs:
                self._send(400, {"error": {"message": "logprobs are not supported", "param": "logprobs"}})
            elif body.get("stream"):
                self._stream()
            else:
                choice: dict[str, Any] = {
                    "message": {"role": "assistant", "content": "".join(state.answer)},
                    "finish_reason": "stop",
                }
                if body.get("logprobs"):
                    choice["logprobs"] = {"content": [{"token": state.answer[0], "logprob": -0.1,
                                                       "top_logprobs": state.top_logprobs}]}
                self._send(200, {"choices": [choice]})

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for i, piece in enumerate(state.answer):
                last = i == len(state.answer) - 1
                chunk = {
                    "choices": [{"delta": {"content": piece}, "finish_reason": "stop" if last else None}]
                }
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            self._raw(status, json.dumps(payload).encode(), "application/json")

        def _raw(self, status: int, data: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[FakeServer, str]]:
    state = FakeServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=httpd.serve_forever, name="fake-openai", daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


FRAME = np.zeros((720, 1280, 3), np.uint8)


def remote(url: str, **kwargs: Any) -> RemoteCaptioner:
    cfg = RemoteConfig(
        url=url,
        model="glm-edge-v-5b",
        timeout=kwargs.pop("timeout", 5.0),
        retries=kwargs.pop("retries", 2),
        image_width=kwargs.pop("image_width", 640),
        **kwargs,
    )
    return RemoteCaptioner(cfg, max_new_tokens=32)


def test_caption_sends_image_and_prompt(server: tuple[FakeServer, str]) -> None:
    """One request: the prompt text and the frame as a JPEG data URL, scaled to image_width."""
    state, url = server
    res = remote(url).caption(FRAME, "What is at the door?")
    assert res.text == "A person is at the door."
    assert res.finish_reason == "stop"
    assert res.tokens == ()
    body = state.requests[0]
    assert body["model"] == "glm-edge-v-5b"
    assert body["max_tokens"] == 32
    assert body["temperature"] == 0
    content = body["messages"][0]["content"]
    assert {"type": "text", "text": "What is at the door?"} in content
    image_url = next(c for c in content if c["type"] == "image_url")["image_url"]["url"]
    assert image_url.startswith("data:image/jpeg;base64,")
    jpeg = cv2.imdecode(
        np.frombuffer(base64.b64decode(image_url.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR
    )
    assert jpeg.shape == (360, 640, 3)


def test_streaming_calls_on_token_per_chunk(server: tuple[FakeServer, str]) -> None:
    """With a token callback the answer is streamed and each chunk is passed on."""
    state, url = server
    pieces: list[str] = []
    res = remote(url).caption(FRAME, "describe", on_token=pieces.append)
    assert pieces == state.answer
    assert res.text == "A person is at the door."
    assert state.requests[0]["stream"] is True


def test_cancel_stops_reading_the_stream(server: tuple[FakeServer, str]) -> None:
    """Cancelling between chunks returns what arrived so far."""
    _state, url = server
    cancel = threading.Event()

    def on_token(piece: str) -> None:
        cancel.set()

    res = remote(url).caption(FRAME, "describe", cancel=cancel, on_token=on_token)
    assert res.finish_reason == "cancelled"
    assert res.text == "A person"


def test_server_errors_are_retried(server: tuple[FakeServer, str]) -> None:
    """A 503 is retried (with back-off) and the next answer is used."""
    state, url = server
    state.script = ["503"]
    res = remote(url).caption(FRAME, "describe")
    assert res.text == "A person is at the door."
    assert len(state.requests) == 2
    assert res.timings["attempts"] == 2


def test_client_errors_are_not_retried(server: tuple[FakeServer, str]) -> None:
    """A 401 fails at once with the status and the server's message."""
    state, url = server
    state.script = ["401", "ok"]
    with pytest.raises(RemoteError, match=r"HTTP 401 .*scripted 401"):
        remote(url).caption(FRAME, "describe")
    assert len(state.requests) == 1


def test_retries_run_out(server: tuple[FakeServer, str]) -> None:
    """After `retries` retries the last error is raised."""
    state, url = server
    state.script = ["503", "503", "503"]
    with pytest.raises(RemoteError, match="HTTP 503"):
        remote(url, retries=1).caption(FRAME, "describe")
    assert len(state.requests) == 2


def test_timeout_is_an_error(server: tuple[FakeServer, str]) -> None:
    """A server slower than the timeout gives a clear error instead of hanging."""
    state, url = server
    state.script = ["stall"]
    with pytest.raises(RemoteError, match="chat/completions"):
        remote(url, timeout=0.3, retries=0).caption(FRAME, "describe")


def test_non_json_answer_is_reported(server: tuple[FakeServer, str]) -> None:
    """An HTML page instead of an answer says so."""
    state, url = server
    state.script = ["garbage"]
    with pytest.raises(RemoteError, match="not a chat-completions answer"):
        remote(url).caption(FRAME, "describe")


def test_unreachable_server_fails_per_request_not_at_load() -> None:
    """Nothing listening: loading works (the daemon keeps running), the caption raises."""
    cap = remote("http://127.0.0.1:9/v1", retries=0, timeout=1.0)
    with pytest.raises(RemoteError, match=r"127\.0\.0\.1:9"):
        cap.caption(FRAME, "describe")


def test_api_key_is_sent_as_bearer_and_never_logged(server: tuple[FakeServer, str], tmp_path: Path) -> None:
    """The key file's content goes in the Authorization header and nowhere in the logs."""
    from structlog.testing import capture_logs

    state, url = server
    key = tmp_path / "key"
    key.write_text("sk-very-secret\n", encoding="utf-8")
    cfg = CaptionerConfig(backend="remote", remote=RemoteConfig(url=url, api_key_file=key, retries=1))
    state.script = ["503"]
    with capture_logs() as logs:
        cap = load_captioner(cfg)
        cap.caption(FRAME, "describe")
    assert state.headers[-1]["Authorization"] == "Bearer sk-very-secret"
    assert logs, "the retry is logged"
    assert "sk-very-secret" not in repr(logs)


def test_look_reads_p_yes_from_top_logprobs(server: tuple[FakeServer, str]) -> None:
    """A yes/no question is one token with its top log-probabilities; every yes spelling counts."""
    state, url = server
    state.answer = ["Yes"]
    state.top_logprobs = [
        {"token": "Yes", "logprob": math.log(0.6)},
        {"token": " yes", "logprob": math.log(0.1)},
        {"token": "No", "logprob": math.log(0.2)},
        {"token": "Maybe", "logprob": math.log(0.05)},
    ]
    look = remote(url).look(FRAME, ["Describe the scene."], ["Is the door open?"])
    (answer,) = look.answers
    assert answer.p_yes == pytest.approx(0.7 / 0.9)
    assert answer.answer == "yes"
    ask, caption = state.requests
    assert (ask["max_tokens"], ask["logprobs"], ask["top_logprobs"]) == (1, True, 10)
    assert ask["messages"][0]["content"][1]["text"] == "Is the door open? Answer yes or no."
    assert "logprobs" not in caption
    assert look.texts[0].text == "Yes"
    # The frame is encoded once and the same JPEG goes with every request.
    assert ask["messages"][0]["content"][0] == caption["messages"][0]["content"][0]
    assert look.timings["requests"] == look.timings["vision_passes"] == 2


def test_look_without_logprobs_reads_the_answer_word(server: tuple[FakeServer, str]) -> None:
    """A server that refuses log-probabilities is asked for the word alone, from then on."""
    state, url = server
    state.refuse_logprobs = True
    state.answer = ["No."]
    look = remote(url).look(FRAME, [], ["Is the door open?", "Is it night?"])
    assert [a.p_yes for a in look.answers] == [0.0, 0.0]
    assert [bool(r.get("logprobs")) for r in state.requests] == [True, False, False]


def test_look_answer_neither_yes_nor_no_is_an_error(server: tuple[FakeServer, str]) -> None:
    state, url = server
    state.answer = ["Perhaps"]
    with pytest.raises(RemoteError, match="neither"):
        remote(url).look(FRAME, [], ["Is the door open?"])


def test_look_bad_question_sends_nothing(server: tuple[FakeServer, str]) -> None:
    state, url = server
    with pytest.raises(BadQuestion, match="question 2: the question is empty"):
        remote(url).look(FRAME, ["Describe."], ["Is the door open?", "  "])
    assert state.requests == []


def test_look_past_deadline_sends_nothing(server: tuple[FakeServer, str]) -> None:
    state, url = server
    look = remote(url).look(FRAME, ["Describe."], ["Is the door open?"], deadline=time.monotonic() - 1)
    assert (look.texts, look.answers, state.requests) == ((), (), [])
