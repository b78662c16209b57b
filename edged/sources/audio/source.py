"""`AudioSource`: one microphone's supervised thread, cutting its input into timestamped chunks.

Chunks go into a bounded queue with the BLOCK policy and a short deadline: audio is never dropped
silently. When the consumer (keyword spotting) falls behind by more than the queue holds, the chunk
is counted as an overrun and logged (rate-limited), as are device overflows.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edged.config.schema import MicrophoneConfig, microphone_kind
from edged.logs import get_logger
from edged.metrics import RateMeter
from edged.queues import BoundedQueue, DropPolicy, QueueClosed
from edged.sources.audio.chunk import SAMPLE_RATE, AudioChunk
from edged.sources.audio.convert import to_int16
from edged.sources.audio.readers import AudioReader, open_reader
from edged.sources.reach import network_address, port_answers
from edged.supervise import Health, SourceEnded, Supervisor

_READ_TICK = 0.1  # longest a read waits, so stop() is honoured within a tick
_OVERRUN_LOG_INTERVAL = 10.0


class Chunker:
    """Cuts a stream of float32 blocks into fixed-size int16 chunks (pure; no clocks)."""

    def __init__(self, chunk_samples: int) -> None:
        self.size = chunk_samples
        self._pending = np.zeros(0, np.float32)

    def feed(self, block: np.ndarray) -> list[np.ndarray]:
        data = np.concatenate([self._pending, block]) if len(self._pending) else block
        n = len(data) // self.size
        self._pending = data[n * self.size:]
        return [to_int16(data[i * self.size:(i + 1) * self.size]) for i in range(n)]


class AudioSession:
    """An open reader: each `step` reads a block, chunks it, paces it and queues the chunks."""

    def __init__(self, source: AudioSource, reader: AudioReader, generation: int) -> None:
        self._src = source
        self._reader = reader
        self._generation = generation
        self._chunker = Chunker(source.chunk_samples)
        self._origin: float | None = None  # monotonic time of stream_time 0 for paced files
        self._paced = not reader.live and source.config.realtime

    def step(self) -> None:
        try:
            block = self._reader.read(_READ_TICK)
        except SourceEnded:
            if self._reader.live or not self._src.config.loop:
                raise
            self._reader.close()
            self._reader = self._src.reopen()
            return
        self._src.overruns_from_device(self._reader.overruns)
        for samples in self._chunker.feed(block):
            self._src.emit(samples, self._generation, self._due(samples), wait=not self._reader.live)

    def _due(self, samples: np.ndarray) -> float:
        """When this chunk's end is due: now for live input; for paced files, wait until then."""
        now = time.monotonic()
        if not self._paced:
            return now
        end_time = self._src.stream_time + len(samples) / SAMPLE_RATE
        if self._origin is None or now - (self._origin + end_time) > 1.0:  # start, or fell far behind
            self._origin = now - end_time
        due = self._origin + end_time
        if due > now:
            self._src.supervisor.stopping.wait(due - now)
        return due

    def close(self) -> None:
        self._reader.close()


class AudioSource:
    """Owns one microphone: its supervised reader thread, its chunk queue and its counters."""

    def __init__(
        self,
        config: MicrophoneConfig,
        on_health: Callable[[Health], None],
        camera_url: str | None = None,
        queue: BoundedQueue[AudioChunk] | None = None,
    ) -> None:
        self.config = config
        self.log = get_logger(mic=config.id)
        self.chunk_samples = SAMPLE_RATE * config.chunk_ms // 1000
        depth = max(2, int(config.queue_seconds * 1000 / config.chunk_ms))
        self.chunks: BoundedQueue[AudioChunk] = queue or BoundedQueue(f"audio-{config.id}", depth, DropPolicy.BLOCK)
        self._camera_url = camera_url
        self.stream_time = 0.0
        self._seq = 0
        self._generation = 0
        self.overruns = 0
        self._device_overruns_seen = 0
        self._last_overrun_log = 0.0
        self.rate = RateMeter()
        url = camera_url if microphone_kind(config.device) == "camera" else config.device
        probe = functools.partial(port_answers, url) if url and network_address(url) else None
        self.supervisor = Supervisor(f"audio-{config.id}", self._connect, config.reconnect, on_health, self.log,
                                     stall_timeout=max(2.0, 20 * config.chunk_ms / 1000), probe=probe)

    def start(self) -> None:
        self.log.info("audio_source_starting", chunk_ms=self.config.chunk_ms, queue_depth=self.chunks.maxsize)
        self.supervisor.start()

    def stop(self, timeout: float = 3.0) -> bool:
        self.supervisor.stopping.set()
        self.chunks.close()
        return self.supervisor.stop(timeout)

    def _connect(self) -> AudioSession:
        reader = open_reader(self.config, self._camera_url)
        self._generation += 1
        self._device_overruns_seen = 0
        return AudioSession(self, reader, self._generation)

    def reopen(self) -> AudioReader:
        """A fresh reader for the next loop of a file (stream time keeps running)."""
        return open_reader(self.config, self._camera_url)

    def emit(self, samples: np.ndarray, generation: int, ts: float, wait: bool = False) -> None:
        """Queue a chunk. A file (`wait`) waits for the consumer: nothing is lost, and no device
        overflows meanwhile. Live input cannot wait: a consumer behind by the whole queue gets a few
        chunk-lengths of grace, then the chunk is dropped and counted as an overrun."""
        self.stream_time += len(samples) / SAMPLE_RATE
        self._seq += 1
        chunk = AudioChunk(self.config.id, self._seq, samples, self.stream_time, ts, time.time(), generation)
        self.supervisor.mark_activity()
        self.rate.mark()
        try:
            if not self.chunks.put(chunk, timeout=None if wait else 4 * self.config.chunk_ms / 1000):
                self._count_overrun("consumer_behind")
        except QueueClosed:
            return

    def overruns_from_device(self, total: int) -> None:
        if total > self._device_overruns_seen:
            for _ in range(total - self._device_overruns_seen):
                self._count_overrun("device_overflow")
            self._device_overruns_seen = total

    def _count_overrun(self, cause: str) -> None:
        self.overruns += 1
        now = time.monotonic()
        if now - self._last_overrun_log >= _OVERRUN_LOG_INTERVAL or self.overruns == 1:
            self._last_overrun_log = now
            self.log.warning("audio_overrun", cause=cause, overruns=self.overruns)

    def snapshot_stats(self) -> dict[str, Any]:
        health = self.supervisor.health()
        return {
            "kind": "microphone", "state": health.state.value, "chunks_per_s": round(self.rate.rate(), 1),
            "stream_time_s": round(self.stream_time, 2), "overruns": self.overruns,
            "queue_depth": len(self.chunks), "reconnects": health.reconnects, "stalls": health.stalls,
        }
