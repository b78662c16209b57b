"""The `openwakeword` backend: openWakeWord's three-stage models (what users train custom words with).

Every 80 ms (1280 samples) the melspectrogram model turns the newest 1760 samples (the 80 ms plus
30 ms of history) into 8 frames of 32 mel bands (rescaled by x/10 + 2, as openWakeWord does); the
embedding model turns the last 76 frames (~0.78 s) into one 96-value embedding; each keyword's
classifier reads its last N embeddings (16 for the v0.1 models, ~1.3 s) and returns a probability.
The feature stages are shared by every keyword. Each stage is a .tflite file (run by the TFLite C
library) or an .onnx file (run by onnxruntime), both on one thread.

The backend keeps the last `KEPT` embeddings with their times, so a keyword's learned verifier
(`edged.analysis.kws.verifier`) can read the embeddings up to any detection, whichever family made
it; with no keyword of its own the backend is only that feature source.

A new stream starts as if preceded by silence: the mel and embedding history are those of digital
silence, computed once when the backend loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from edged.analysis.kws.backend import KeywordTable, TableBackend, check_samples
from edged.analysis.kws.catalog import ModelSpec, open_feature_models
from edged.analysis.kws.errors import ModelError
from edged.analysis.kws.scoring import Detection, KeywordSettings
from edged.config.keywords import OPEN
from edged.sources.audio.chunk import AudioChunk

STEP_SAMPLES = 1280  # 80 ms between scores
MEL_INPUT = 1760  # STEP_SAMPLES + 480 samples of history
HISTORY = MEL_INPUT - STEP_SAMPLES
MEL_BANDS = 32
MEL_FRAMES = 76  # the embedding model's window
EMBEDDING = 96
KEPT = 80  # embeddings kept (6.4 s): a verifier's 16 before a detection anywhere in a long chunk


class _Runner(Protocol):
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]

    def run(self, x: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


def load_model(path: Path, input_shape: tuple[int, ...] | None = None) -> _Runner:
    """A .tflite or .onnx model runner, chosen by the file's suffix."""
    if path.suffix == ".onnx":
        from edged.analysis.kws._onnx import OnnxModel

        return OnnxModel(path, input_shape)
    if path.suffix == ".tflite":
        from edged.analysis.tflite import TfLiteModel

        return TfLiteModel(path, input_shape)
    raise ModelError(f"{path}: openWakeWord models must be .tflite or .onnx files")


class OpenWakeWordBackend(TableBackend):
    """openWakeWord models for one audio stream (see the module docstring)."""

    name = OPEN
    step = STEP_SAMPLES / 16000

    def __init__(self, specs: Sequence[ModelSpec], settings: Sequence[KeywordSettings],
                 models_dir: Path | None = None) -> None:
        mel_path, emb_path = open_feature_models(models_dir)
        self._mel = load_model(mel_path, (1, MEL_INPUT))
        self._emb = load_model(emb_path, (1, MEL_FRAMES, MEL_BANDS, 1))
        self._check(mel_path, self._mel.output_shape, MEL_BANDS)
        self._check(emb_path, self._emb.output_shape, EMBEDDING)
        self._classifiers = [load_model(spec.model) for spec in specs]
        self._windows: list[int] = []
        for spec, clf in zip(specs, self._classifiers, strict=True):
            shape = clf.input_shape
            if len(shape) != 3 or shape[2] != EMBEDDING:
                raise ModelError(f"{spec.model}: expected an openWakeWord classifier with input "
                                 f"[1, N, {EMBEDDING}] (got {list(shape)})")
            self._windows.append(int(shape[1]))
        self.table = KeywordTable(OPEN, specs, settings, self.step)
        self._history = max([KEPT, *self._windows])
        self._audio = np.zeros(HISTORY, dtype=np.float32)  # the samples before the next step
        self._idle: list[tuple[np.ndarray, float]] = []  # pre-roll chunks while the VAD gate is shut
        self._mels = np.zeros((MEL_FRAMES, MEL_BANDS), dtype=np.float32)
        self._embs = np.zeros((self._history, EMBEDDING), dtype=np.float32)
        self._times = np.full(self._history, -np.inf)  # stream time of each embedding (silence: -inf)
        self._silence = self._silent_state()
        self.reset()

    @staticmethod
    def _check(path: Path, shape: tuple[int, ...], last: int) -> None:
        if not shape or shape[-1] != last:
            raise ModelError(f"{path}: unexpected output shape {list(shape)} "
                             f"(last dimension should be {last})")

    def _silent_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Mel frames and embeddings of digital silence: the history a new stream starts from."""
        mel_step = self._mel_frames(np.zeros(MEL_INPUT, dtype=np.float32))
        mels = np.tile(mel_step, (MEL_FRAMES // len(mel_step) + 1, 1))[-MEL_FRAMES:]
        emb = self._embed(mels)
        return mels, np.tile(emb, (self._history, 1))

    def _mel_frames(self, audio: np.ndarray) -> np.ndarray:
        out = self._mel.run(audio.reshape(1, MEL_INPUT))
        return out.reshape(-1, MEL_BANDS) / 10.0 + 2.0

    def _embed(self, mels: np.ndarray) -> np.ndarray:
        x = mels.reshape(1, MEL_FRAMES, MEL_BANDS, 1).astype(np.float32)
        out: np.ndarray = self._emb.run(x).reshape(EMBEDDING).copy()
        return out

    def process(self, chunk: AudioChunk) -> list[Detection]:
        samples = check_samples(chunk)
        self.table.take_resets()  # classifiers are stateless: clearing the score tracks is enough
        detections: list[Detection] = []
        if self._idle:
            pending, self._idle = self._idle, []
            self.reset()  # a fresh stream (silence before it), then the pre-roll
            for piece, end in pending:
                detections.extend(self._run(piece, end))
        detections.extend(self._run(samples, chunk.stream_time))
        return detections

    def idle(self, chunk: AudioChunk, pre_roll: float) -> None:
        """Keep the last `pre_roll` seconds of audio; the models (all the cost) do not run."""
        self._idle.append((check_samples(chunk), chunk.stream_time))
        keep = pre_roll * 16000
        while len(self._idle) > 1 and sum(len(p) for p, _ in self._idle[1:]) >= keep:
            self._idle.pop(0)

    def _run(self, samples: np.ndarray, end_time: float) -> list[Detection]:
        audio = np.concatenate((self._audio, samples.astype(np.float32)))
        detections: list[Detection] = []
        pos = 0
        while len(audio) - pos >= MEL_INPUT:
            mels = self._mel_frames(audio[pos:pos + MEL_INPUT])
            pos += STEP_SAMPLES
            self._mels = np.concatenate((self._mels[len(mels):], mels))
            self._embs = np.concatenate((self._embs[1:], self._embed(self._mels)[None, :]))
            t = end_time - (len(audio) - pos - HISTORY) / 16000
            self._times = np.append(self._times[1:], t)
            detections.extend(self._classify(t))
        self._audio = audio[pos:]
        return detections

    def _classify(self, t: float) -> list[Detection]:
        settings = self.table.current()
        out = []
        for i, clf in enumerate(self._classifiers):
            if not settings[i].enabled:
                continue
            window = self._embs[-self._windows[i]:][None, :, :]
            prob = float(clf.run(window).flat[0])
            hit = self.table.score(i, settings[i], prob, t)
            if hit is not None:
                out.append(hit)
        return out

    def embeddings_until(self, t: float) -> np.ndarray:
        """The kept embeddings up to the last one computed at or before stream time `t`, oldest first."""
        n = int(np.searchsorted(self._times, t + 1e-6, side="right"))
        out: np.ndarray = self._embs[:max(n, 1)]
        return out

    def reset(self) -> None:
        self._idle = []
        self._times = np.full(self._history, -np.inf)
        self._audio = np.zeros(HISTORY, dtype=np.float32)
        self._mels = self._silence[0].copy()
        self._embs = self._silence[1].copy()
        self.table.clear()

    def close(self) -> None:
        for model in (self._mel, self._emb, *self._classifiers):
            model.close()
