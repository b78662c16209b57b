"""An energy gate in front of keyword inference: skip silence, replay a pre-roll when sound starts.

A chunk is "loud" when its RMS level is at or above `threshold_db` (dBFS). The gate opens on a loud
chunk and first releases the chunks buffered before it (the pre-roll, so the start of a keyword
is not clipped), then passes everything until `hangover` seconds after the last loud chunk
(so the models hear the end of the word and the quiet after it, which is when they fire). Closed,
it only keeps the pre-roll ring. Pure: it sees chunks, never a clock.

This is a level gate, not a speech classifier: in steady noise above the threshold it stays open
(nothing saved, nothing lost). Set the threshold a few dB above the room's noise floor.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from edged.sources.audio.chunk import AudioChunk

FULL_SCALE = 32768.0


def level_db(samples: np.ndarray) -> float:
    """RMS level of int16 samples in dBFS (-inf dB for digital silence is reported as -120)."""
    if len(samples) == 0:
        return -120.0
    x = samples.astype(np.float32)
    power = float(np.dot(x, x)) / len(x)
    if power <= 0.0:
        return -120.0
    return 10.0 * math.log10(power / (FULL_SCALE * FULL_SCALE))


class VadGate:
    """Which chunks reach the keyword models (see the module docstring)."""

    def __init__(self, threshold_db: float, pre_roll: float, hangover: float) -> None:
        self.threshold_db = threshold_db
        self.pre_roll = pre_roll
        self.hangover = hangover
        self._ring: deque[AudioChunk] = deque()
        self._ring_seconds = 0.0
        self._open_until: float | None = None  # stream time the gate closes, while open
        self.chunks_in = 0
        self.chunks_passed = 0
        self.openings = 0

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def push(self, chunk: AudioChunk) -> list[AudioChunk]:
        """The chunks to run inference on now, in stream order (empty while the gate is closed)."""
        self.chunks_in += 1
        loud = level_db(chunk.samples) >= self.threshold_db
        if self._open_until is not None:
            if loud:
                self._open_until = chunk.stream_time + self.hangover
            elif chunk.stream_time > self._open_until:
                self._open_until = None
                self._remember(chunk)
                return []
            self.chunks_passed += 1
            return [chunk]
        if not loud:
            self._remember(chunk)
            return []
        self.openings += 1
        self._open_until = chunk.stream_time + self.hangover
        out = [*self._ring, chunk]
        self._ring.clear()
        self._ring_seconds = 0.0
        self.chunks_passed += len(out)
        return out

    def _remember(self, chunk: AudioChunk) -> None:
        self._ring.append(chunk)
        self._ring_seconds += chunk.duration
        while self._ring and self._ring_seconds - self._ring[0].duration >= self.pre_roll:
            self._ring_seconds -= self._ring.popleft().duration
        if self.pre_roll <= 0:
            self._ring.clear()
            self._ring_seconds = 0.0

    def reset(self) -> None:
        self._ring.clear()
        self._ring_seconds = 0.0
        self._open_until = None

    @property
    def passed_fraction(self) -> float:
        """Share of chunks that reached the models (1.0 before any chunk)."""
        return self.chunks_passed / self.chunks_in if self.chunks_in else 1.0
