"""`KeywordSpotter`, the daemon's thread per microphone, on real models and real audio."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from structlog.testing import capture_logs

from edged.analysis.kws import KeywordSpotter
from edged.config.schema import MicrophoneConfig, WakewordConfig
from edged.events import KeywordDetected
from edged.queues import BoundedQueue, DropPolicy
from edged.sources.audio.chunk import AudioChunk
from edged.sources.audio.files import iter_chunks
from tests.kws_support import fixture_audio

MIC = MicrophoneConfig(id="kitchen", device="hw:1,0", camera="porch")


def _chunks(samples: np.ndarray, *, generation: int = 0, start_seq: int = 0) -> list[AudioChunk]:
    now, wall = time.monotonic(), time.time()
    return [
        AudioChunk("kitchen", c.seq, c.samples, c.stream_time, now, wall + c.stream_time, generation)
        for c in iter_chunks(samples, 160, "kitchen", start_seq)
    ]


def _drain(spotter: KeywordSpotter, expected_chunks: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while spotter.chunks_processed + spotter.bad_chunks < expected_chunks and time.monotonic() < deadline:
        time.sleep(0.02)
    assert spotter.chunks_processed + spotter.bad_chunks == expected_chunks


def _spotter(
    events: list[KeywordDetected], keywords: tuple[str, ...] = ("alexa",), maxsize: int = 10_000
) -> tuple[KeywordSpotter, BoundedQueue[AudioChunk]]:
    queue: BoundedQueue[AudioChunk] = BoundedQueue("kitchen-audio", maxsize, DropPolicy.BLOCK)
    return KeywordSpotter(MIC, WakewordConfig(defaults="model", keywords=keywords), queue, events.append), queue


def test_spotter_publishes_keyword_events() -> None:
    """Each spoken keyword becomes a KeywordDetected with mic, camera, score trace and the MQTT payload."""
    events: list[KeywordDetected] = []
    spotter, queue = _spotter(events)
    chunks = _chunks(fixture_audio("positive_alexa.flac"))
    spotter.start()
    for c in chunks:
        queue.put(c, timeout=5)
    _drain(spotter, len(chunks))
    assert spotter.stop()
    assert len(events) >= 3
    event = events[0]
    assert (event.mic, event.camera, event.keyword, event.backend) == (
        "kitchen",
        "porch",
        "alexa",
        "micro-wakeword",
    )
    assert event.score > event.cutoff == 0.9
    assert event.trace[-1] == event.score
    assert event.trace_step > 0
    assert abs(event.ts - (chunks[0].wall_ts - chunks[0].stream_time + event.stream_time)) < 1e-6
    message = event.to_message("edged/pi")
    assert message.topic == "edged/pi/kitchen/keyword"
    assert message.durable
    payload = json.loads(message.payload)
    assert {"event_type", "score", "ts", "id", "camera"} <= payload.keys()
    assert payload["event_type"] == "alexa"
    back = KeywordDetected.from_message("edged/pi", message.topic, message.payload)
    assert (back.keyword, back.camera, back.id, len(back.trace)) == (
        "alexa",
        "porch",
        event.id,
        len(event.trace),
    )
    stats = spotter.stats()
    assert stats["chunks"] == len(chunks)
    assert stats["detections"] == len(events)
    assert stats["queue"]["overruns"] == 0
    assert stats["gaps"] == 0
    assert set(stats["lag_ms"]) == {"current", "max", "mean"}
    assert stats["cpu_rtf"] > 0


def test_stop_is_prompt_and_the_thread_is_named() -> None:
    """The thread is named kws-<mic>, idles on timeouts, and stop() joins it within a second."""
    spotter, _ = _spotter([])
    spotter.start()
    assert spotter._thread is not None
    assert spotter._thread.name == "kws-kitchen"
    time.sleep(0.3)
    t0 = time.monotonic()
    assert spotter.stop(timeout=1.0)
    assert time.monotonic() - t0 < 1.0
    assert not spotter.running


def test_closed_queue_ends_the_thread() -> None:
    """When the audio source closes its queue, the spotter's thread ends by itself."""
    spotter, queue = _spotter([])
    spotter.start()
    queue.close()
    deadline = time.monotonic() + 5
    while spotter.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not spotter.running
    spotter.stop()


def test_restart_gap_bad_audio_and_failing_callback() -> None:
    """A new generation resets the stream, missing chunks are counted, bad chunks and a raising
    callback are logged and counted, and the thread keeps going."""
    calls: list[KeywordDetected] = []

    def callback(event: KeywordDetected) -> None:
        calls.append(event)
        if len(calls) == 1:
            raise RuntimeError("scheduler hiccup")

    queue: BoundedQueue[AudioChunk] = BoundedQueue("kitchen-audio", 10_000, DropPolicy.BLOCK)
    spotter = KeywordSpotter(MIC, WakewordConfig(defaults="model", keywords=("alexa",)), queue, callback)
    audio = fixture_audio("positive_alexa.flac")
    first = _chunks(audio)
    second = _chunks(audio, generation=1)
    with_gap = first[:100] + first[110:]
    bad = AudioChunk("kitchen", 0, np.zeros(160, np.float32), 0.01, time.monotonic(), time.time(), 1)
    with capture_logs() as logs:
        spotter.start()
        for c in [*with_gap, bad, *second]:
            queue.put(c, timeout=5)
        _drain(spotter, len(with_gap) + 1 + len(second))
        spotter.stop()
    events = [entry["event"] for entry in logs]
    assert spotter.gaps == 10
    assert spotter.bad_chunks == 1
    assert "kws_bad_audio" in events
    assert spotter.callback_errors == 1
    assert "kws_callback_failed" in events
    assert "kws_stream_restarted" in events
    assert len(calls) >= 6  # detections continued after the failing callback and across the restart


def test_runtime_setters_from_the_mqtt_thread() -> None:
    """/set handlers switch a keyword off and move its cutoff while the thread runs."""
    events: list[KeywordDetected] = []
    spotter, queue = _spotter(events, ("alexa", "okay_nabu"))
    spotter.start()
    spotter.set_enabled("alexa", False)
    spotter.set_cutoff("okay_nabu", 0.9)
    chunks = _chunks(fixture_audio("positive_alexa.flac"))
    for c in chunks:
        queue.put(c, timeout=5)
    _drain(spotter, len(chunks))
    spotter.stop()
    assert not [e for e in events if e.keyword == "alexa"]
    assert spotter.settings("okay_nabu").cutoff == 0.9
    assert not spotter.settings("alexa").enabled
    with pytest.raises(Exception, match="not configured"):
        spotter.set_enabled("hey_siri", True)
