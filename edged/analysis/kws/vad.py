"""An energy gate in front of keyword inference: skip the models while the room is quiet.

A chunk is "loud" when its RMS level is at or above `threshold_db` (dBFS). The gate opens on a loud
chunk and stays open until `hangover` seconds after the last one (so the models hear the end of
the word and the quiet after it, which is when they fire). Pure: it sees chunks, never a clock.

What happens to the audio while the gate is closed is the backends' business (`idle()`): each keeps
its cheap, adaptive front end running and the last `pre_roll` seconds of what its models would
need, and replays that into freshly reset models when the gate opens, so a keyword said right
after silence is heard from its first phoneme. (Measured: skipping the front end too, or replaying
into stale model state, costs recall; see docs/benchmarks.md.)

This is a level gate, not a speech classifier: in steady noise above the threshold it stays open
(nothing saved, nothing lost). Set the threshold a few dB above the room's quiet level.
"""

from __future__ import annotations

import math

import numpy as np

from edged.sources.audio.chunk import AudioChunk

FULL_SCALE = 32768.0


def level_db(samples: np.ndarray) -> float:
    """RMS level of int16 samples in dBFS (digital silence is reported as -120 dB)."""
    if len(samples) == 0:
        return -120.0
    x = samples.astype(np.float32)
    power = float(np.dot(x, x)) / len(x)
    if power <= 0.0:
        return -120.0
    return 10.0 * math.log10(power / (FULL_SCALE * FULL_SCALE))


class VadGate:
    """Whether each chunk reaches the keyword models (see the module docstring)."""

    def __init__(self, threshold_db: float, hangover: float) -> None:
        self.threshold_db = threshold_db
        self.hangover = hangover
        self._open_until: float | None = None  # stream time the gate closes, while open
        self.chunks_in = 0
        self.chunks_passed = 0
        self.openings = 0

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def push(self, chunk: AudioChunk) -> bool:
        """True when the models should hear this chunk."""
        self.chunks_in += 1
        loud = level_db(chunk.samples) >= self.threshold_db
        if loud:
            if self._open_until is None:
                self.openings += 1
            self._open_until = chunk.stream_time + self.hangover
        elif self._open_until is not None and chunk.stream_time > self._open_until:
            self._open_until = None
        if self._open_until is None:
            return False
        self.chunks_passed += 1
        return True

    def reset(self) -> None:
        self._open_until = None

    @property
    def passed_fraction(self) -> float:
        """Share of chunks that reached the models (1.0 before any chunk)."""
        return self.chunks_passed / self.chunks_in if self.chunks_in else 1.0
