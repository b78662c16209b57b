"""`KeywordSpotter`: the daemon's keyword-spotting thread for one microphone.

A thin shell around `KeywordEngine`: it takes chunks from the audio source's bounded queue, runs
them through the engine, turns detections into `KeywordDetected` events for `on_detection`, and
keeps the figures the stats topic publishes: how far behind real time it is (`time.monotonic() -
chunk.ts` after each chunk), the CPU it spends per second of audio, chunks lost upstream.

Models are loaded in the constructor, so a bad keyword or model file fails at start-up with a
message naming it. `set_enabled` / `set_cutoff` (the MQTT `/set` handlers) are safe from any thread.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from edged.analysis.kws.engine import KeywordEngine
from edged.analysis.kws.errors import AudioFormatError
from edged.analysis.kws.scoring import Detection, KeywordSettings
from edged.config.schema import MicrophoneConfig, WakewordConfig
from edged.events import KeywordDetected
from edged.logs import get_logger
from edged.queues import BoundedQueue, QueueClosed
from edged.sources.audio.chunk import AudioChunk

TICK = 0.1  # longest wait on the queue before the stop flag is checked again


class KeywordSpotter:
    """One microphone's keyword spotting on its own named thread (see the module docstring)."""

    def __init__(self, mic: MicrophoneConfig, config: WakewordConfig, chunks: BoundedQueue[AudioChunk],
                 on_detection: Callable[[KeywordDetected], None], *,
                 engine: KeywordEngine | None = None) -> None:
        self.mic = mic
        self.config = config
        self.chunks = chunks
        self.on_detection = on_detection
        self.engine = engine if engine is not None else KeywordEngine.from_config(config)
        self.log = get_logger(mic=mic.id)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._generation: int | None = None
        self._next_seq: int | None = None
        self.chunks_processed = 0
        self.audio_seconds = 0.0
        self.cpu_seconds = 0.0
        self.detections = 0
        self.gaps = 0  # chunks missing between sequence numbers (lost upstream)
        self.bad_chunks = 0
        self.callback_errors = 0
        self.lag_current = 0.0
        self.lag_max = 0.0
        self._lag_sum = 0.0

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"keyword spotter for {self.mic.id} already started")
        self._thread = threading.Thread(target=self._run, name=f"kws-{self.mic.id}", daemon=True)
        self._thread.start()
        self.log.info("kws_started", keywords=self.engine.describe(), vad=self.engine.vad is not None)

    def stop(self, timeout: float = 1.0) -> bool:
        """Ask the thread to stop and wait up to `timeout` s; True when it has ended."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                self.log.warning("kws_stop_timeout", timeout_s=timeout)
                return False
        self.engine.close()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                chunk = self.chunks.get(timeout=TICK)
            except QueueClosed:
                self.log.info("kws_source_closed")
                break
            if chunk is not None:
                self._handle(chunk)

    # -- one chunk -----------------------------------------------------------------------------------

    def _handle(self, chunk: AudioChunk) -> None:
        self._track_stream(chunk)
        cpu0 = time.thread_time()
        try:
            hits = self.engine.process(chunk)
        except AudioFormatError as exc:
            self.bad_chunks += 1
            if self.bad_chunks == 1 or self.bad_chunks % 1000 == 0:
                self.log.error("kws_bad_audio", error=str(exc), count=self.bad_chunks)
            return
        self.cpu_seconds += time.thread_time() - cpu0
        self.audio_seconds += chunk.duration
        self.chunks_processed += 1
        lag = time.monotonic() - chunk.ts
        self.lag_current = lag
        self.lag_max = max(self.lag_max, lag)
        self._lag_sum += lag
        for hit in hits:
            self._publish(hit, chunk)

    def _track_stream(self, chunk: AudioChunk) -> None:
        if chunk.generation != self._generation:
            if self._generation is not None:
                self.engine.reset()  # the source restarted: a new stream
                self.log.info("kws_stream_restarted", generation=chunk.generation)
            self._generation = chunk.generation
            self._next_seq = None
        if self._next_seq is not None and chunk.seq > self._next_seq:
            missing = chunk.seq - self._next_seq
            self.gaps += missing
            self.log.warning("kws_chunks_missing", missing=missing, total=self.gaps)
        self._next_seq = chunk.seq + 1

    def _publish(self, hit: Detection, chunk: AudioChunk) -> None:
        self.detections += 1
        event = detection_event(hit, self.mic, chunk)
        self.log.info("keyword_detected", keyword=hit.keyword, score=round(hit.score, 3),
                      stream_time=round(hit.stream_time, 3), backend=hit.backend, id=event.id)
        try:
            self.on_detection(event)
        except Exception:
            self.callback_errors += 1
            self.log.exception("kws_callback_failed", keyword=hit.keyword)

    # -- runtime settings (any thread) ----------------------------------------------------------------

    def set_enabled(self, keyword: str, enabled: bool) -> None:
        self.engine.set_enabled(keyword, enabled)
        self.log.info("kws_keyword_switched", keyword=keyword, enabled=enabled)

    def set_cutoff(self, keyword: str, cutoff: float) -> None:
        self.engine.set_cutoff(keyword, cutoff)
        self.log.info("kws_cutoff_set", keyword=keyword, cutoff=cutoff)

    def settings(self, keyword: str) -> KeywordSettings:
        return self.engine.settings(keyword)

    @property
    def keywords(self) -> tuple[str, ...]:
        return self.engine.keywords

    # -- figures ----------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """A snapshot for the stats topic (safe from any thread)."""
        n = self.chunks_processed
        vad = self.engine.vad
        return {
            "keywords": list(self.engine.keywords),
            "chunks": n,
            "audio_s": round(self.audio_seconds, 2),
            "detections": self.detections,
            "suppressed": self.engine.refractory.suppressed,
            "verifier_rejected": self.engine.rejected,  # first-stage detections a keyword's verifier turned down
            "lag_ms": {"current": round(self.lag_current * 1000, 1), "max": round(self.lag_max * 1000, 1),
                       "mean": round(self._lag_sum / n * 1000, 1) if n else 0.0},
            "cpu_rtf": round(self.cpu_seconds / self.audio_seconds, 5) if self.audio_seconds else 0.0,
            "queue": {"depth": len(self.chunks), "high_water": self.chunks.high_water,
                      "overruns": self.chunks.dropped},
            "gaps": self.gaps,
            "bad_chunks": self.bad_chunks,
            "callback_errors": self.callback_errors,
            "vad_passed": round(vad.passed_fraction, 3) if vad is not None else None,
        }


def detection_event(hit: Detection, mic: MicrophoneConfig, chunk: AudioChunk) -> KeywordDetected:
    """The published event for a detection made while processing `chunk`."""
    wall = chunk.wall_ts - (chunk.stream_time - hit.stream_time) if chunk.wall_ts else time.time()
    return KeywordDetected(id=uuid.uuid4().hex, mic=mic.id, keyword=hit.keyword, score=hit.score, ts=wall,
                           stream_time=hit.stream_time, camera=mic.camera, cutoff=hit.cutoff, trace=hit.trace,
                           trace_step=hit.trace_step, backend=hit.backend)
