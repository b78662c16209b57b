"""The `micro-wakeword` backend: microWakeWord streaming models (ESPHome's wake words).

Audio -> the TFLite-Micro audio frontend (40 log-mel features every 10 ms, 30 ms windows; the
`pymicro-features` package) -> each keyword's streaming model, which takes `stride` (3) feature rows
at a time and returns one quantized probability every 30 ms -> the mean of the last
`sliding_window_size` probabilities is compared with `probability_cutoff` (both from the model's
JSON). One frontend serves every keyword; each model keeps its own streaming state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edged.analysis.kws._tflite import TfLiteModel
from edged.analysis.kws.backend import KeywordTable, ScoreSink, check_samples
from edged.analysis.kws.catalog import MICRO, ModelSpec
from edged.analysis.kws.errors import ModelError
from edged.analysis.kws.scoring import Detection, KeywordSettings
from edged.sources.audio.chunk import AudioChunk

FEATURE_STEP = 160  # samples per frontend step (10 ms)
FEATURES = 40


class _StreamingModel:
    """One keyword's model with its quantized input rows."""

    def __init__(self, spec: ModelSpec) -> None:
        self.tflite = TfLiteModel(spec.model)
        shape = self.tflite.input_shape
        if len(shape) != 3 or shape[0] != 1 or shape[2] != FEATURES:
            raise ModelError(f"{spec.model}: expected a microWakeWord streaming model with input "
                             f"[1, stride, {FEATURES}] (got {list(shape)})")
        if self.tflite.input_dtype not in (np.int8, np.uint8):
            raise ModelError(f"{spec.model}: expected a quantized (int8/uint8) microWakeWord model")
        self.stride = shape[1]
        self.in_scale, self.in_zero = self.tflite.input_quant
        self.out_scale, self.out_zero = self.tflite.output_quant
        info = np.iinfo(self.tflite.input_dtype)
        self.limits = (float(info.min), float(info.max))
        self.rows = np.zeros(shape, dtype=self.tflite.input_dtype)
        self.filled = 0

    def add(self, features: np.ndarray) -> float | None:
        """Add one feature row; the model's probability once `stride` rows have arrived."""
        q = np.round(features / self.in_scale + self.in_zero)
        np.clip(q, self.limits[0], self.limits[1], out=q)
        self.rows[0, self.filled] = q
        self.filled += 1
        if self.filled < self.stride:
            return None
        self.filled = 0
        out = self.tflite.run(self.rows)
        return (float(out.flat[0]) - self.out_zero) * self.out_scale

    def reset(self) -> None:
        self.tflite.reset()
        self.filled = 0


class MicroWakeWordBackend:
    """microWakeWord models for one audio stream (see the module docstring)."""

    name = MICRO

    def __init__(self, specs: Sequence[ModelSpec], settings: Sequence[KeywordSettings]) -> None:
        from pymicro_features import MicroFrontend

        self._frontend = MicroFrontend()
        self._models = [_StreamingModel(spec) for spec in specs]
        stride = self._models[0].stride if self._models else 3
        self.step = stride * FEATURE_STEP / 16000
        self.table = KeywordTable(MICRO, specs, settings, self.step)
        self._leftover = np.zeros(0, dtype=np.int16)

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

    def process(self, chunk: AudioChunk) -> list[Detection]:
        samples = check_samples(chunk)
        for i in self.table.take_resets():
            self._models[i].reset()
        if len(self._leftover):
            samples = np.concatenate((self._leftover, samples))
        settings = self.table.current()
        detections: list[Detection] = []
        frontend = self._frontend
        pos, n = 0, len(samples)
        while n - pos >= FEATURE_STEP:
            result = frontend.process_samples(samples[pos:pos + FEATURE_STEP].tobytes())
            pos += result.samples_read or FEATURE_STEP
            if not result.features:
                continue
            features = np.asarray(result.features, dtype=np.float64)
            t = chunk.stream_time - (n - pos) / 16000
            for i, model in enumerate(self._models):
                if not settings[i].enabled:
                    continue
                prob = model.add(features)
                if prob is not None:
                    hit = self.table.score(i, settings[i], prob, t)
                    if hit is not None:
                        detections.append(hit)
        self._leftover = samples[pos:] if pos < n else np.zeros(0, dtype=np.int16)
        return detections

    def reset(self) -> None:
        self._frontend.reset()
        self._leftover = np.zeros(0, dtype=np.int16)
        for model in self._models:
            model.reset()
        self.table.clear()

    def close(self) -> None:
        for model in self._models:
            model.tflite.close()
