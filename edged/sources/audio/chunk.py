"""`AudioChunk`: a short run of 16 kHz mono PCM with its place in the stream and on the clock."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000


@dataclass(frozen=True, eq=False)
class AudioChunk:
    """10-20 ms of 16 kHz mono int16 audio from one microphone.

    `stream_time` is the audio time (seconds) at the *end* of the chunk since the stream started;
    `ts` is the monotonic clock when the chunk was captured (for live sources) or was due (for paced
    files), so `time.monotonic() - ts` is how far a consumer lags behind real time.
    """

    mic: str
    seq: int
    samples: np.ndarray  # int16, shape (n,)
    stream_time: float
    ts: float
    wall_ts: float
    generation: int = 0

    def __post_init__(self) -> None:
        self.samples.flags.writeable = False

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE
