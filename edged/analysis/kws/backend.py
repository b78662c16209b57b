"""The keyword-backend protocol, and the per-keyword settings every backend shares.

A backend turns 16 kHz mono int16 chunks into detections for its keywords. It owns its models and
their streaming state, so one backend object serves one audio stream on one thread; only the
setters (`set_enabled`, `set_cutoff`) may be called from other threads (MQTT `/set` handlers).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from edged.analysis.kws.catalog import ModelSpec
from edged.analysis.kws.errors import AudioFormatError, UnknownKeywordError
from edged.analysis.kws.scoring import Detection, KeywordSettings, ScoreTrack, crossed
from edged.sources.audio.chunk import SAMPLE_RATE, AudioChunk

ScoreSink = Callable[[str, float, float], None]  # (keyword, stream_time, smoothed score), every score


@runtime_checkable
class KeywordBackend(Protocol):
    """What `KeywordEngine` needs from a wake-word model family."""

    name: str  # the config's backend name
    step: float  # seconds of audio between two scores of a keyword

    @property
    def keywords(self) -> tuple[str, ...]:
        """The keywords this backend spots (event names), in config order."""
        ...

    def settings(self, keyword: str) -> KeywordSettings: ...

    def process(self, chunk: AudioChunk) -> list[Detection]:
        """Feed one chunk (in stream order); detections whose smoothed score crossed the cutoff.

        After `idle` chunks, the models first start fresh on the buffered pre-roll."""
        ...

    def idle(self, chunk: AudioChunk, pre_roll: float) -> None:
        """The VAD gate is closed for this chunk: keep the cheap state current and the last
        `pre_roll` seconds buffered, but run no keyword model."""
        ...

    def reset(self) -> None:
        """Forget all streaming state: the next chunk starts a new stream."""
        ...

    def set_enabled(self, keyword: str, enabled: bool) -> None: ...

    def set_cutoff(self, keyword: str, cutoff: float) -> None: ...

    def set_score_sink(self, sink: ScoreSink | None) -> None:
        """Also hand every smoothed score to `sink` (evaluation and threshold sweeps); None stops it."""
        ...

    def close(self) -> None: ...


def check_samples(chunk: AudioChunk) -> np.ndarray:
    """The chunk's samples, if they are what keyword spotting takes (1-D int16 at 16 kHz)."""
    samples = chunk.samples
    if samples.dtype != np.int16 or samples.ndim != 1:
        raise AudioFormatError(
            f"microphone {chunk.mic}: keyword spotting takes 16 kHz mono int16 chunks "
            f"(got {samples.dtype} with shape {samples.shape})")
    return samples


class KeywordTable:
    """The keywords of one backend: settings (swapped whole under a lock), score tracks, resets due.

    The spotter thread reads `current()` once per chunk (one reference read); setters from other
    threads replace the mapping, so a reader never sees a half-applied change.
    """

    def __init__(self, backend: str, specs: Sequence[ModelSpec], settings: Sequence[KeywordSettings],
                 step: float) -> None:
        self.backend = backend
        self.names = tuple(s.keyword for s in specs)
        self.specs = tuple(specs)
        self._settings = tuple(settings)
        self.tracks = [ScoreTrack(s.window, step) for s in settings]
        self.step = step
        self._lock = threading.Lock()
        self._due_reset: set[int] = set()
        self.sink: ScoreSink | None = None

    def index(self, keyword: str) -> int:
        try:
            return self.names.index(keyword)
        except ValueError:
            raise UnknownKeywordError(f"keyword {keyword!r} is not spotted by the {self.backend} backend "
                                      f"(spotted: {', '.join(self.names)})") from None

    def current(self) -> tuple[KeywordSettings, ...]:
        return self._settings

    def get(self, keyword: str) -> KeywordSettings:
        return self._settings[self.index(keyword)]

    def set_enabled(self, keyword: str, enabled: bool) -> None:
        i = self.index(keyword)
        with self._lock:
            old = self._settings[i]
            if enabled and not old.enabled:
                self._due_reset.add(i)  # its model state went stale while it was off
            self._settings = (*self._settings[:i], old.with_enabled(enabled), *self._settings[i + 1:])

    def set_cutoff(self, keyword: str, cutoff: float) -> None:
        i = self.index(keyword)
        with self._lock:
            new = self._settings[i].with_cutoff(cutoff)  # validates the range
            self._settings = (*self._settings[:i], new, *self._settings[i + 1:])

    @property
    def resets_due(self) -> bool:
        return bool(self._due_reset)

    def take_resets(self) -> set[int]:
        """Keywords re-enabled since the last call (their state must be reset before use)."""
        if not self._due_reset:
            return set()
        with self._lock:
            due, self._due_reset = self._due_reset, set()
        for i in due:
            self.tracks[i].clear()
        return due

    def clear(self) -> None:
        for track in self.tracks:
            track.clear()

    def score(self, i: int, settings: KeywordSettings, raw: float, stream_time: float) -> Detection | None:
        """Push keyword `i`'s raw score; a `Detection` when the smoothed score crosses the cutoff."""
        track = self.tracks[i]
        mean = track.push(raw)
        if self.sink is not None:
            self.sink(self.names[i], stream_time, mean)
        if not crossed(mean, settings.cutoff):
            return None
        return Detection(self.names[i], mean, stream_time, settings.cutoff, self.backend, track.trace(),
                         self.step)


def seconds(samples: int) -> float:
    return samples / SAMPLE_RATE


class TableBackend:
    """The per-keyword settings part of a backend, kept in its `KeywordTable` (shared by both families)."""

    table: KeywordTable

    @property
    def keywords(self) -> tuple[str, ...]:
        return self.table.names

    def settings(self, keyword: str) -> KeywordSettings:
        return self.table.get(keyword)

    def set_enabled(self, keyword: str, enabled: bool) -> None:
        self.table.set_enabled(keyword, enabled)

    def set_cutoff(self, keyword: str, cutoff: float) -> None:
        self.table.set_cutoff(keyword, cutoff)

    def set_score_sink(self, sink: ScoreSink | None) -> None:
        self.table.sink = sink
