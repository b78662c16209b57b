"""Sample-format conversion and streaming resampling to 16 kHz mono int16.

Everything here is pure numpy: unit-testable, and it releases the GIL in the heavy parts.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from edged.sources.audio.chunk import SAMPLE_RATE

SampleFormat = Literal["u8", "s16", "s24", "s32", "f32", "f64"]
BYTES_PER_SAMPLE: dict[str, int] = {"u8": 1, "s16": 2, "s24": 3, "s32": 4, "f32": 4, "f64": 8}


def decode_pcm(data: bytes, fmt: SampleFormat, channels: int) -> np.ndarray:
    """Little-endian interleaved PCM bytes -> float32 array of shape (frames, channels) in [-1, 1]."""
    width = BYTES_PER_SAMPLE[fmt]
    usable = len(data) - len(data) % (width * channels)
    raw = memoryview(data)[:usable]
    if fmt == "u8":
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif fmt == "s16":
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif fmt == "s24":
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / float(1 << 23)
    elif fmt == "s32":
        x = (np.frombuffer(raw, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    elif fmt == "f32":
        x = np.frombuffer(raw, "<f4").astype(np.float32)
    else:
        x = np.frombuffer(raw, "<f8").astype(np.float32)
    return x.reshape(-1, channels)


def to_mono(x: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (frames,) by averaging channels."""
    if x.ndim == 1:
        return x
    return x[:, 0] if x.shape[1] == 1 else x.mean(axis=1, dtype=np.float32)


def to_int16(x: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] -> int16, clipped; the inverse of `decode_pcm`'s scaling, so int16 input comes back
    sample for sample."""
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


class StreamResampler:
    """Resamples a mono float32 stream by a rational factor with a windowed-sinc polyphase filter.

    State carries across calls, so chunk boundaries leave no clicks: feeding a signal in pieces
    gives the same output as feeding it whole.
    """

    def __init__(self, in_rate: int, out_rate: int = SAMPLE_RATE, half_taps: int = 16) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive (got {in_rate} -> {out_rate})")
        g = math.gcd(in_rate, out_rate)
        self.up, self.down = out_rate // g, in_rate // g
        self.in_rate, self.out_rate = in_rate, out_rate
        self._half = half_taps
        self._filters = self._design(half_taps)  # (up, 2*half) taps per phase
        # Left context of the first sample is silence; `_next` is the position of the next output,
        # in 1/up input samples, measured from the start of `_history`.
        self._history = np.zeros(half_taps - 1, np.float32)
        self._next = (half_taps - 1) * self.up

    @property
    def passthrough(self) -> bool:
        return self.up == self.down

    def _design(self, half: int) -> np.ndarray:
        cutoff = 0.5 * min(1.0, self.up / self.down) * 0.95  # of the input rate, with a little guard band
        phases = np.arange(self.up)[:, None] / self.up
        k = np.arange(-half + 1, half + 1)[None, :] - phases  # distance from each tap to the output point
        window = 0.5 + 0.5 * np.cos(np.pi * np.clip(k / half, -1, 1))
        taps = 2 * cutoff * np.sinc(2 * cutoff * k) * window
        filters: np.ndarray = (taps / taps.sum(axis=1, keepdims=True)).astype(np.float32)
        return filters

    def process(self, x: np.ndarray) -> np.ndarray:
        """Resample the next block of input samples."""
        if self.passthrough:
            return x.astype(np.float32, copy=False)
        buf = np.concatenate([self._history, x.astype(np.float32, copy=False)])
        h = self._half
        # An output centred on input sample n needs buf[n-h+1 .. n+h]: wait for the lookahead.
        limit = (len(buf) - h) * self.up
        count = max(0, -(-(limit - self._next) // self.down))
        pos = self._next + self.down * np.arange(count)
        centre, phase = pos // self.up, pos % self.up
        idx = centre[:, None] + np.arange(-h + 1, h + 1)[None, :]
        out = np.einsum("ij,ij->i", buf[idx], self._filters[phase]) if count else np.zeros(0, np.float32)
        self._next += self.down * count
        drop = max(0, min(self._next // self.up - h + 1, len(buf)))
        self._history = buf[drop:]
        self._next -= drop * self.up
        return out.astype(np.float32)

    def flush(self) -> np.ndarray:
        """Outputs still waiting for lookahead, as if the stream ended in silence."""
        return self.process(np.zeros(self._half, np.float32)) if not self.passthrough else np.zeros(0, np.float32)
