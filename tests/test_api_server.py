"""The HTTP server with the real scheduler and worker, in this process, where a caller's timing can be
controlled: the model is the scripted stand-in of test_scheduler.py (one token every `token_s`
seconds, honouring cancel and deadline between tokens as the real one does), because these tests need
a model that is busy for a known time; the real tiny model answers in milliseconds and is exercised
through the real daemon in test_api_live.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from edged.api.server import ApiServer
from edged.config import parse_config
from edged.inference.worker import InferenceWorker
from edged.scheduling.lifecycle import EventTracker
from edged.scheduling.scheduler import Scheduler
from tests.support.api import data_url, openai_messages, porch_jpeg
from tests.support.broker import free_port
from tests.test_scheduler import ScriptedCaptioner

BODY = json.dumps({"model": "m", "messages": openai_messages(data_url(porch_jpeg(width=160)))}).encode()


@dataclass
class Served:
    server: ApiServer
    scheduler: Scheduler
    model: ScriptedCaptioner
    url: str

    def post(self, timeout: float = 30.0, body: bytes = BODY, path: str = "/v1/chat/completions") -> httpx.Response:
        return httpx.post(self.url + path, content=body, timeout=timeout)


class Pipe:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler


@pytest.fixture
def served() -> Iterator[Any]:
    made: list[tuple[ApiServer, Scheduler, InferenceWorker]] = []

    def make(tokens: int, token_s: float, api: str = "") -> Served:
        port = free_port()
        config = parse_config(f"api: {{listen: 127.0.0.1:{port}{api}}}\n")
        model = ScriptedCaptioner(["A person at the door."], tokens=tokens, token_s=token_s)
        worker = InferenceWorker(model)
        scheduler = Scheduler(config, {}, worker, EventTracker(lambda _e: None, {}), lambda _e: None)
        worker.start()
        scheduler.start()
        assert config.api is not None
        server = ApiServer(config.api, None, lambda: Pipe(scheduler))
        assert server.start()
        made.append((server, scheduler, worker))
        return Served(server, scheduler, model, f"http://127.0.0.1:{port}")

    yield make
    for server, scheduler, worker in made:
        server.stop(2.0)
        scheduler.stop()
        worker.stop()


def in_background(fn: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as exc:  # kept for the test to look at
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_third_caller_is_told_to_retry_while_two_are_in(served: Any) -> None:
    """`max_concurrent: 2`: with two requests queued or running, the third is answered 429 at once with a
    Retry-After and OpenAI's rate-limit error; once they are answered, a caller is served again."""
    api = served(tokens=60, token_s=0.02)
    calls = [in_background(api.post) for _ in range(2)]
    wait_for(lambda: api.server.stats()["in_flight"] == 2)
    started = time.monotonic()
    refused = api.post()
    assert time.monotonic() - started < 1.0
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["type"] == "rate_limit_error"
    for thread, out in calls:
        thread.join(30)
        assert out[0].status_code == 200
    assert api.post().status_code == 200
    assert api.server.stats()["busy_429"] == 1


def test_a_caller_that_hangs_up_frees_the_model(served: Any) -> None:
    """A client that gives up mid-caption: its job is cancelled at the next token (withdrawn), and the
    next caller's answer comes at once instead of after the abandoned one."""
    api = served(tokens=500, token_s=0.01)  # 5 s if left to run
    with pytest.raises(httpx.ReadTimeout):
        api.post(timeout=0.5)
    wait_for(lambda: api.scheduler.stats()["withdrawn"] == 1, timeout=5)
    api.model.tokens = 2
    started = time.monotonic()
    assert api.post().status_code == 200
    assert time.monotonic() - started < 2.5


def test_stopping_answers_waiting_callers_503_at_once(served: Any) -> None:
    """The daemon stops the API first: a caller still waiting for the model gets 503 with Retry-After
    right away, and the server's thread ends within its share of the stop budget."""
    api = served(tokens=500, token_s=0.01)
    thread, out = in_background(api.post)
    wait_for(lambda: api.model.calls == 1)
    started = time.monotonic()
    assert api.server.stop(1.0)
    thread.join(5)
    assert time.monotonic() - started < 1.0
    assert out[0].status_code == 503
    assert out[0].headers["Retry-After"] == "5"
    assert out[0].json()["error"]["message"] == "edged is stopping"


def test_an_answer_that_misses_the_deadline_is_503_with_retry_after(served: Any) -> None:
    """`deadline: 300ms` and a 2 s answer: the model stops at the deadline, the caller gets 503."""
    api = served(tokens=100, token_s=0.02, api=", deadline: 300ms")
    started = time.monotonic()
    late = api.post()
    assert time.monotonic() - started < 2.0
    assert late.status_code == 503
    assert "deadline" in late.json()["error"]["message"]
    assert int(late.headers["Retry-After"]) >= 1


def test_tokens_stream_as_the_model_writes_them(served: Any) -> None:
    """Server-sent events leave as each token is written, not when the answer is complete."""
    api = served(tokens=5, token_s=0.3)
    body = json.loads(BODY)
    arrivals: list[float] = []
    started = time.monotonic()
    with httpx.stream("POST", api.url + "/v1/chat/completions", json={**body, "stream": True}, timeout=30) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 5
    assert arrivals[-1] - arrivals[0] > 0.6  # spread over the answer's 1.5 s, not in one burst at the end

