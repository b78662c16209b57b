"""An onnxruntime session with the same small interface as `TfLiteModel` (for openWakeWord's .onnx files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edged.analysis.kws.errors import ModelError

_DTYPES = {"tensor(float)": np.float32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
           "tensor(int16)": np.int16}


class OnnxModel:
    """One `.onnx` file on one CPU thread; `run(x)` feeds the first input and returns the first output."""

    def __init__(self, path: Path, input_shape: tuple[int, ...] | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelError(f"{self.path}: not a valid ONNX model ({str(exc).splitlines()[0]})") from None
        first = self._session.get_inputs()[0]
        self._input_name = first.name
        self.input_dtype: Any = _DTYPES.get(first.type, np.float32)
        declared = tuple(d if isinstance(d, int) else -1 for d in first.shape)
        self.input_shape = input_shape or tuple(d if d > 0 else 1 for d in declared)
        self.input_quant = (0.0, 0)
        self.output_quant = (0.0, 0)
        out = self.run(np.zeros(self.input_shape, dtype=self.input_dtype))
        self.output_shape = tuple(out.shape)
        self.output_dtype: Any = out.dtype

    def run(self, x: np.ndarray) -> np.ndarray:
        try:
            out = self._session.run(None, {self._input_name: np.ascontiguousarray(x, dtype=self.input_dtype)})
        except Exception as exc:
            raise ModelError(f"{self.path}: inference failed ({str(exc).splitlines()[0]})") from None
        return np.asarray(out[0])

    def reset(self) -> None:
        """openWakeWord's models keep no state between calls."""

    def close(self) -> None:
        self._session = None
