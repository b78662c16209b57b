"""The memory in the real daemon: `edged run` with the tiny GLM-Edge-V bundle (random weights: its words
are nonsense, every stage is real) captioning the porch sample on motion with structured summaries on,
a real Mosquitto, then `request/search` over MQTT and `edged history search` on the same database, while
the daemon writes and after it stopped."""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.support.api import SAMPLE
from tests.support.broker import Broker
from tests.support.daemon import DaemonProcess
from tests.support.mqtt import Subscriber

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "glm-edge-v-tiny"
BASE = "edged/hist"


@dataclass
class Live:
    daemon: DaemonProcess
    sub: Subscriber
    config: Path
    history: Path
    caption: dict[str, Any]  # the first caption the daemon published
    word: str  # a word of it to search for

    def request(self, command: str, args: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        transaction = f"t-{time.monotonic_ns()}"
        self.sub.publish(f"{BASE}/request/{command}", json.dumps({**args, "transaction": transaction}))
        topic = f"{BASE}/response/{command}"
        self.sub.wait_for(lambda msgs: any(m.topic == topic and transaction.encode() in m.payload for m in msgs),
                          timeout=timeout)
        (answer,) = [json.loads(m.payload) for m in self.sub.on(topic) if transaction.encode() in m.payload]
        return dict(answer)

    def search(self, **args: Any) -> dict[str, Any]:
        return self.request("search", args)


def search_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edged", "history", "search", *args, "-c", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def longest_word(text: str) -> str:
    words = [w for w in re.findall(r"[^\W\d_]+", text) if len(w) >= 3]
    assert words, f"no word to search for in {text!r}"
    return max(words, key=len)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("history-live")
    broker = Broker(tmp).start()
    sub = Subscriber(broker.port, [f"{BASE}/#"]).start()
    config = tmp / "edged.yaml"
    config.write_text(
        f"device: {{id: hist}}\nstate_dir: {tmp / 'state'}\nlog: {{level: info, format: json}}\n"
        f"mqtt: {{port: {broker.port}, stats_interval: 1s}}\n"
        f"models: {{captioner: {{path: {TINY}, max_new_tokens: 12}}}}\n"
        f"cameras:\n  porch: {{url: {SAMPLE}, loop: true, motion: {{off_delay: 3s}},\n"
        "    captions: {on: [motion, request], summary: structured, summary_max_tokens: 16}}\n")
    daemon = DaemonProcess(config)
    try:
        daemon.wait_log("history_opened", timeout=60)
        message = sub.wait_topic(f"{BASE}/porch/caption", timeout=120)
        caption = json.loads(message.payload)
        yield Live(daemon, sub, config, tmp / "state" / "history", caption, longest_word(caption["caption"]))
    finally:
        code = daemon.stop()
        sub.stop()
        broker.stop()
    assert code == 0


def wait_found(live: Live, timeout: float = 20, **args: Any) -> dict[str, Any]:
    """Search until something is found (the recorder writes a moment just after it is published)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = live.search(**args)
        if (answer["status"] == "ok" and answer["data"]["count"]) or time.monotonic() > deadline:
            return answer
        time.sleep(0.3)


def test_a_published_caption_is_found_by_request_search(live: Live) -> None:
    """`request/search` with a word of a caption the daemon published returns that moment: time, camera,
    kind, trigger, text, and the snapshot as a JPEG file on the board."""
    answer = wait_found(live, query=live.word, since="1h", camera="porch", limit=50)
    assert answer["status"] == "ok", answer
    data = answer["data"]
    assert data["query"] == live.word and data["count"] == len(data["moments"]) >= 1
    (moment,) = [m for m in data["moments"] if m["text"] == live.caption["caption"]][:1]
    assert moment["camera"] == "porch" and moment["kind"] == "caption" and moment["trigger"] == "motion"
    assert moment["title"] == live.caption["title"] and abs(moment["ts"] - live.caption["frame_ts"]) < 0.01
    assert moment["event_id"] == live.caption["id"]
    snapshot = Path(moment["snapshot"])
    assert snapshot.is_relative_to(live.history)
    image = cv2.imdecode(np.frombuffer(snapshot.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[0] == 360


def test_structured_fields_reach_the_payload_and_the_memory(live: Live) -> None:
    """With `summary: structured` the caption payload carries `summary` and `threat_level`; the tiny model's
    random words follow no format, so the text is the summary and the threat level is absent."""
    assert live.caption["summary"] == live.caption["caption"]
    assert live.caption["threat_level"] is None
    moments = wait_found(live, query=live.word, limit=50)["data"]["moments"]
    assert all(m["threat_level"] is None for m in moments)


def test_an_answer_is_remembered_with_its_question(live: Live) -> None:
    """An `ask` is answered, then found as an `answer` moment by the words of its question."""
    asked = live.request("ask", {"camera": "porch", "question": "Is there a striped umbrella?"}, timeout=120)
    assert asked["status"] == "ok", asked
    found = wait_found(live, query="striped umbrella", kind="answer")["data"]["moments"]
    assert found and found[0]["question"] == "Is there a striped umbrella?"
    assert found[0]["text"] == asked["data"]["answer"] and found[0]["kind"] == "answer"


@pytest.mark.parametrize(("args", "error"), [
    ({"query": '"red car'}, "double quote is not closed"),
    ({"query": ""}, "no words to look for"),
    ({"query": "x" * 600}, "limit is 500"),
    ({"query": 5}, "must be text"),
    ({"query": "car", "limit": 5000}, "limit must be"),
    ({"query": "car", "since": "last week"}, "since must be a duration"),
    ({"query": "car", "order": "new"}, "unknown argument 'order'"),
    ({}, "needs a \"query\""),
    ({"query": "NEAR(car) title:x ^y {a b}: *"}, None),  # FTS5 syntax is words: an ordinary (empty) answer
])
def test_bad_searches_get_clear_errors(live: Live, args: dict[str, Any], error: str | None) -> None:
    """Malformed, empty, huge and hostile queries are answered with what is wrong, never a crash."""
    answer = live.search(**args)
    if error is None:
        assert answer["status"] == "ok" and answer["data"]["moments"] == []
    else:
        assert answer["status"] == "error" and error in answer["error"], answer
    assert live.daemon.proc.poll() is None


def test_the_cli_reads_the_database_while_the_daemon_writes(live: Live) -> None:
    """`edged history search WORD --since 1d --camera porch --json`: one JSON line per moment, the same
    moments as the request; text output and a bad query's exit status too."""
    wait_found(live, query=live.word)
    until = live.caption["frame_ts"] + 0.001  # moments up to the first caption: all written by now
    iso = dt.datetime.fromtimestamp(until, dt.timezone.utc).isoformat()
    done = search_cli(live.config, live.word, "--since", "1d", "--until", iso, "--camera", "porch", "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines and all(m["camera"] == "porch" for m in lines)
    assert any(m["text"] == live.caption["caption"] for m in lines)
    assert lines == live.search(query=live.word, since="1d", until=until, camera="porch")["data"]["moments"]
    one = search_cli(live.config, live.word, "--limit", "1")
    assert one.returncode == 0 and "porch  caption [motion]" in one.stdout
    bad = search_cli(live.config, '"unclosed')
    assert bad.returncode == 2 and "double quote is not closed" in bad.stderr


def test_history_is_in_stats(live: Live) -> None:
    """`…/stats` shows the recorder's figures under system.history."""
    live.sub.wait_for(lambda msgs: any(m.topic == f"{BASE}/stats" and b'"history"' in m.payload for m in msgs),
                      timeout=10)
    stats = json.loads([m for m in live.sub.on(f"{BASE}/stats") if b'"history"' in m.payload][-1].payload)
    history = stats["system"]["history"]
    assert history["written"] >= 1 and history["dropped"] == 0 and history["failed"] == 0


def test_after_the_daemon_stops_the_cli_still_finds_everything(live: Live) -> None:
    """Stop flushes: what was recorded is found by the CLI once the daemon has exited (run last)."""
    before = json.loads(live.sub.on(f"{BASE}/stats")[-1].payload)["system"]["history"]["written"]
    assert live.daemon.stop() == 0
    closed = [line for line in live.daemon.lines() if line.get("event") == "history_closed"]
    assert len(closed) == 1 and int(closed[0]["written"]) >= before  # type: ignore[call-overload]
    done = search_cli(live.config, live.word, "--json", "--limit", "200")
    assert done.returncode == 0 and any(json.loads(line)["text"] == live.caption["caption"]
                                        for line in done.stdout.splitlines())


def history_config(path: Path, port: int, clip: Path, history: str) -> Path:
    path.write_text(
        f"device: {{id: hist}}\nstate_dir: {path.parent / 'state'}\nlog: {{level: info, format: json}}\n"
        f"mqtt: {{port: {port}, stats_interval: 1s}}\nmodels: {{captioner: {{backend: none}}}}\n"
        f"history: {history}\ncameras:\n  porch: {{url: {clip}, loop: true}}\n")
    return path


def test_a_reload_switches_history_off_and_on_and_a_bad_path_is_one_log_line(
        tmp_path: Path, broker: Broker, clip: Path) -> None:
    """SIGHUP with `history.enabled: false` closes it (search says it is off); back on, it reopens; a
    history path that cannot be a directory is logged and everything else runs."""
    config = history_config(tmp_path / "edged.yaml", broker.port, clip, "{max_age: 2d}")
    daemon = DaemonProcess(config)
    sub = Subscriber(broker.port, [f"{BASE}/#"]).start()
    live = Live(daemon, sub, config, tmp_path / "state" / "history", {}, "")
    try:
        daemon.wait_log("history_opened", timeout=60)
        assert live.search(query="car")["data"]["count"] == 0
        history_config(config, broker.port, clip, "{enabled: false}")
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_log("history_closed")
        daemon.wait_log("config_reloaded")
        off = live.search(query="car")
        assert off["status"] == "error" and "history is off" in off["error"]
        (tmp_path / "not-a-dir").write_text("")
        history_config(config, broker.port, clip, f"{{path: {tmp_path / 'not-a-dir'}}}")
        daemon.proc.send_signal(signal.SIGHUP)
        failed = daemon.wait_log("history_unavailable")
        assert "not-a-dir" in str(failed["path"])
        assert live.request("health", {})["data"]["healthy"] is True
        history_config(config, broker.port, clip, "{max_age: 1d}")
        daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while len([x for x in daemon.lines() if x.get("event") == "history_opened"]) < 2:
            assert time.monotonic() < deadline, "history did not reopen"
            time.sleep(0.1)
        assert live.search(query="car")["status"] == "ok"
    finally:
        sub.stop()
        assert daemon.stop() == 0
