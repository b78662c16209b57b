"""The `micro-wakeword` backend: microWakeWord streaming models (ESPHome's wake words).

Audio -> the TFLite-Micro audio frontend (40 log-mel features every 10 ms, 30 ms windows; the
`pymicro-features` package) -> each keyword's streaming model, which takes `stride` (3) feature rows
at a time and returns one quantized probability every 30 ms -> the mean of the last
`sliding_window_size` probabilities is compared with `probability_cutoff` (both from the model's
JSON). One frontend serves every keyword; each model keeps its own streaming state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from edged.analysis.kws.backend import KeywordTable, TableBackend, check_samples
from edged.analysis.kws.catalog import ModelSpec
from edged.analysis.kws.errors import ModelError
from edged.analysis.kws.scoring import Detection, KeywordSettings
from edged.analysis.tflite import TfLiteModel
from edged.config.keywords import MICRO
from edged.sources.audio.chunk import AudioChunk

FEATURE_STEP = 160  # samples per frontend step (10 ms)
FEATURES = 40
_EMPTY = np.zeros(0, dtype=np.int16)


class _StreamingModel:
    """One keyword's streaming model (its state lives in the interpreter)."""

    def __init__(self, spec: ModelSpec) -> None:
        self.tflite = TfLiteModel(spec.model)
        shape = self.tflite.input_shape
        if len(shape) != 3 or shape[0] != 1 or shape[2] != FEATURES:
            raise ModelError(f"{spec.model}: expected a microWakeWord streaming model with input "
                             f"[1, stride, {FEATURES}] (got {list(shape)})")
        if self.tflite.input_dtype not in (np.int8, np.uint8):
            raise ModelError(f"{spec.model}: expected a quantized (int8/uint8) microWakeWord model")
        self.stride = shape[1]
        self.quant = (*self.tflite.input_quant, np.dtype(self.tflite.input_dtype).str)
        self.out_scale, self.out_zero = self.tflite.output_quant

    def score(self, rows: np.ndarray) -> float:
        """Feed `stride` quantized feature rows; the dequantized probability."""
        model = self.tflite
        model.input[0] = rows
        model.invoke()
        return (float(model.output.flat[0]) - self.out_zero) * self.out_scale


class _Quantizer:
    """Feature rows quantized once for every model sharing (stride, scale, zero point, dtype)."""

    def __init__(self, stride: int, scale: float, zero: int, dtype: str) -> None:
        self.scale, self.zero = scale, float(zero)
        info = np.iinfo(np.dtype(dtype))
        self.lo, self.hi = float(info.min), float(info.max)
        self.rows = np.zeros((stride, FEATURES), dtype=np.dtype(dtype))
        self.stride = stride
        self.filled = 0
        self._tmp = np.zeros(FEATURES, dtype=np.float64)
        self.members: list[int] = []  # indices of the models fed from these rows

    def add(self, features: np.ndarray) -> bool:
        """Quantize one row (as pymicro-wakeword does: round(x / scale + zero)); True when `stride` are in."""
        tmp = self._tmp
        np.divide(features, self.scale, out=tmp)
        np.add(tmp, self.zero, out=tmp)
        np.rint(tmp, out=tmp)
        np.maximum(tmp, self.lo, out=tmp)
        np.minimum(tmp, self.hi, out=tmp)
        self.rows[self.filled] = tmp
        self.filled += 1
        if self.filled < self.stride:
            return False
        self.filled = 0
        return True


class MicroWakeWordBackend(TableBackend):
    """microWakeWord models for one audio stream (see the module docstring)."""

    name = MICRO

    def __init__(self, specs: Sequence[ModelSpec], settings: Sequence[KeywordSettings]) -> None:
        from pymicro_features import MicroFrontend

        self._frontend = MicroFrontend()
        self._models = [_StreamingModel(spec) for spec in specs]
        groups: dict[tuple[int, float, int, str], _Quantizer] = {}
        for i, model in enumerate(self._models):
            group = groups.setdefault((model.stride, *model.quant), _Quantizer(model.stride, *model.quant))
            group.members.append(i)
        self._groups = list(groups.values())
        strides = {m.stride for m in self._models}
        if len(strides) > 1:
            raise ModelError("microWakeWord models with different strides cannot share a stream "
                             f"({', '.join(str(s.model) for s in specs)})")
        self.step = (strides.pop() if strides else 3) * FEATURE_STEP / 16000
        self.table = KeywordTable(MICRO, specs, settings, self.step)
        self._leftover = _EMPTY
        self._idle: deque[tuple[np.ndarray, float]] | None = None  # pre-roll rows while the gate is shut

    def process(self, chunk: AudioChunk) -> list[Detection]:
        samples = chunk.samples
        if samples.dtype != np.int16 or samples.ndim != 1:
            check_samples(chunk)
        if self.table.resets_due:
            for i in self.table.take_resets():
                self._models[i].tflite.reset()
        detections: list[Detection] = []
        if self._idle is not None:
            self._wake(detections)
        for features, t in self._features(samples, chunk.stream_time):
            self._feed(features, t, detections)
        return detections

    def idle(self, chunk: AudioChunk, pre_roll: float) -> None:
        """Run only the frontend (its noise estimate and gain control adapt to the quiet room) and
        keep the last `pre_roll` seconds of feature rows for the models."""
        samples = chunk.samples
        if samples.dtype != np.int16 or samples.ndim != 1:
            check_samples(chunk)
        keep = max(1, round(pre_roll * 16000 / FEATURE_STEP))
        if self._idle is None or self._idle.maxlen != keep:
            self._idle = deque(self._idle or (), maxlen=keep)
        self._idle.extend(self._features(samples, chunk.stream_time))

    def _wake(self, detections: list[Detection]) -> None:
        """The gate opened: fresh model state, then the buffered pre-roll."""
        pending, self._idle = self._idle or deque(), None
        self._reset_models()
        for features, t in pending:
            self._feed(features, t, detections)

    def _features(self, samples: np.ndarray, end_time: float) -> list[tuple[np.ndarray, float]]:
        """Frontend feature rows (40 values every 10 ms) with the stream time each one completes."""
        if len(self._leftover):
            samples = np.concatenate((self._leftover, samples))
        out = []
        pos, n = 0, len(samples)
        while n - pos >= FEATURE_STEP:
            result = self._frontend.process_samples(samples[pos:pos + FEATURE_STEP].tobytes())
            pos += result.samples_read or FEATURE_STEP
            if result.features:
                out.append((np.asarray(result.features, dtype=np.float64), end_time - (n - pos) / 16000))
        self._leftover = samples[pos:] if pos < n else _EMPTY
        return out

    def _feed(self, features: np.ndarray, t: float, detections: list[Detection]) -> None:
        """One feature row into every group; score the models whose stride filled up."""
        settings = self.table.current()
        for group in self._groups:
            if not group.add(features):
                continue
            for i in group.members:
                if settings[i].enabled:
                    hit = self.table.score(i, settings[i], self._models[i].score(group.rows), t)
                    if hit is not None:
                        detections.append(hit)

    def reset(self) -> None:
        self._frontend.reset()
        self._leftover = _EMPTY
        self._idle = None
        self._reset_models()

    def _reset_models(self) -> None:
        for model in self._models:
            model.tflite.reset()
        for group in self._groups:
            group.filled = 0
        self.table.clear()

    def close(self) -> None:
        for model in self._models:
            model.tflite.close()
