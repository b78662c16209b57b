"""A minimal TensorFlow Lite runner over the C library that `pymicro-wakeword` ships.

Why not the packages' own classes: edged needs the interpreter single-threaded (so keyword spotting
never competes with the caption model for cores), a state reset that does not re-read the file, and
errors that name the model file instead of a NULL pointer. Both wake-word families and the face
detector (privacy blurring) run through it.
"""

from __future__ import annotations

import contextlib
import ctypes as C
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edged.analysis.kws.errors import ModelError

_REPORTER = C.CFUNCTYPE(None, C.c_void_p, C.c_char_p, C.c_void_p)


class _Quant(C.Structure):
    _fields_ = [("scale", C.c_float), ("zero_point", C.c_int32)]


# TfLiteType -> numpy dtype, for the tensor types wake-word models use.
_DTYPES: dict[int, Any] = {1: np.float32, 2: np.int32, 3: np.uint8, 9: np.int8, 7: np.int16}

_loaded: dict[str, Any] = {}
_lib_lock = threading.Lock()


def library_path() -> Path:
    """The TFLite C library inside the installed `pymicro-wakeword` (or `pyopen-wakeword`) package."""
    import importlib.util

    for package in ("pymicro_wakeword", "pyopen_wakeword"):
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            continue
        for folder in found.submodule_search_locations:
            libs = sorted((Path(folder) / "lib").glob("*tensorflowlite_c.*"))
            if libs:
                return libs[0]
    raise ModelError("no TensorFlow Lite runtime found: install pymicro-wakeword (a core dependency of "
                     "edged; its wheels exist for x86-64, aarch64 and armv7l with glibc >= 2.35)")


def _load_library() -> Any:
    """The C library, loaded and declared once per process."""
    with _lib_lock:
        if "lib" not in _loaded:
            lib = C.CDLL(str(library_path()), mode=os.RTLD_GLOBAL)
            _declare(lib)
            _loaded["lib"] = lib
        return _loaded["lib"]


def _declare(lib: Any) -> None:
    vp, i32, sz = C.c_void_p, C.c_int32, C.c_size_t
    table: dict[str, tuple[list[Any], Any]] = {
        "TfLiteModelCreateWithErrorReporter": ([vp, sz, _REPORTER, vp], vp),
        "TfLiteModelDelete": ([vp], None),
        "TfLiteInterpreterOptionsCreate": ([], vp),
        "TfLiteInterpreterOptionsDelete": ([vp], None),
        "TfLiteInterpreterOptionsSetNumThreads": ([vp, i32], None),
        "TfLiteInterpreterOptionsSetErrorReporter": ([vp, _REPORTER, vp], None),
        "TfLiteInterpreterCreate": ([vp, vp], vp),
        "TfLiteInterpreterDelete": ([vp], None),
        "TfLiteInterpreterAllocateTensors": ([vp], C.c_int),
        "TfLiteInterpreterResizeInputTensor": ([vp, i32, C.POINTER(i32), i32], C.c_int),
        "TfLiteInterpreterInvoke": ([vp], C.c_int),
        "TfLiteInterpreterGetInputTensor": ([vp, i32], vp),
        "TfLiteInterpreterGetOutputTensor": ([vp, i32], vp),
        "TfLiteInterpreterGetOutputTensorCount": ([vp], i32),
        "TfLiteTensorType": ([vp], C.c_int),
        "TfLiteTensorNumDims": ([vp], i32),
        "TfLiteTensorDim": ([vp, i32], i32),
        "TfLiteTensorByteSize": ([vp], sz),
        "TfLiteTensorQuantizationParams": ([vp], _Quant),
        "TfLiteTensorCopyFromBuffer": ([vp, vp, sz], C.c_int),
        "TfLiteTensorCopyToBuffer": ([vp, vp, sz], C.c_int),
        "TfLiteTensorData": ([vp], vp),
    }
    for name, (argtypes, restype) in table.items():
        fn = getattr(lib, name)
        fn.argtypes = argtypes
        fn.restype = restype


class TfLiteModel:
    """One `.tflite` file with a single-threaded interpreter; `run(x)` feeds input 0, returns output 0.

    `input` and `output` are numpy views of the tensors' own memory, for callers that write the
    input in place and call `invoke()` (no copies). They are replaced by `reset()`: never keep one.
    Not thread-safe: each keyword spotter thread owns its models.
    """

    def __init__(self, path: Path, input_shape: tuple[int, ...] | None = None) -> None:
        self.path = Path(path)
        self._lib = _load_library()
        self._errors: list[str] = []
        self._reporter = _REPORTER(self._report)  # kept referenced: the C side calls it later
        try:
            self._data = self.path.read_bytes()
        except FileNotFoundError:
            raise ModelError(f"{self.path}: model file not found") from None
        except OSError as exc:
            raise ModelError(f"{self.path}: cannot read model file ({exc.strerror})") from None
        buf = C.create_string_buffer(self._data, len(self._data))
        self._buf = buf  # the model points into this buffer for its whole life
        self._model = self._lib.TfLiteModelCreateWithErrorReporter(buf, len(self._data), self._reporter, None)
        if not self._model:
            raise ModelError(f"{self.path}: not a valid TensorFlow Lite model ({self._error_text()})")
        self._input_shape = input_shape
        self._interpreter: int | None = None
        self._create_interpreter()

    def _report(self, _user: int | None, fmt: bytes | None, _args: int | None) -> None:
        self._errors.append((fmt or b"").decode(errors="replace").strip())

    def _error_text(self) -> str:
        text = "; ".join(e for e in self._errors if e) or "unknown error"
        self._errors.clear()
        return text

    def _create_interpreter(self) -> None:
        lib = self._lib
        options = lib.TfLiteInterpreterOptionsCreate()
        lib.TfLiteInterpreterOptionsSetNumThreads(options, 1)
        lib.TfLiteInterpreterOptionsSetErrorReporter(options, self._reporter, None)
        interpreter = lib.TfLiteInterpreterCreate(self._model, options)
        lib.TfLiteInterpreterOptionsDelete(options)
        if not interpreter:
            raise ModelError(f"{self.path}: TensorFlow Lite cannot run this model ({self._error_text()})")
        if self._input_shape is not None:
            dims = (C.c_int32 * len(self._input_shape))(*self._input_shape)
            if lib.TfLiteInterpreterResizeInputTensor(interpreter, 0, dims, len(self._input_shape)) != 0:
                lib.TfLiteInterpreterDelete(interpreter)
                raise ModelError(f"{self.path}: input cannot take shape {self._input_shape} "
                                 f"({self._error_text()})")
        if lib.TfLiteInterpreterAllocateTensors(interpreter) != 0:
            lib.TfLiteInterpreterDelete(interpreter)
            raise ModelError(f"{self.path}: cannot allocate tensors ({self._error_text()})")
        self._interpreter = interpreter
        self._in = lib.TfLiteInterpreterGetInputTensor(interpreter, 0)
        self._out = lib.TfLiteInterpreterGetOutputTensor(interpreter, 0)
        if not (self._in and self._out):
            raise ModelError(f"{self.path}: model has no input or output tensor")
        self.input_shape = self._shape(self._in)
        self.output_shape = self._shape(self._out)
        self.input_dtype = self._dtype(self._in)
        self.output_dtype = self._dtype(self._out)
        q_in = lib.TfLiteTensorQuantizationParams(self._in)
        q_out = lib.TfLiteTensorQuantizationParams(self._out)
        self.input_quant = (float(q_in.scale), int(q_in.zero_point))
        self.output_quant = (float(q_out.scale), int(q_out.zero_point))
        self._out_buf = np.empty(self.output_shape, dtype=self.output_dtype)
        self.input = self._view(self._in, self.input_shape, self.input_dtype)
        self.output = self._view(self._out, self.output_shape, self.output_dtype)

    def _view(self, tensor: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        size = int(self._lib.TfLiteTensorByteSize(tensor))
        address = self._lib.TfLiteTensorData(tensor)
        if not address or size != int(np.prod(shape)) * np.dtype(dtype).itemsize:
            raise ModelError(f"{self.path}: tensor memory is not available to read or write")
        memory = (C.c_byte * size).from_address(address)
        view: np.ndarray = np.frombuffer(memoryview(memory), dtype=dtype).reshape(shape)
        return view

    def invoke(self) -> None:
        """Run the model on what was written into `input`; the result is in `output`."""
        if self._lib.TfLiteInterpreterInvoke(self._interpreter) != 0:
            raise ModelError(f"{self.path}: inference failed ({self._error_text()})")

    def _shape(self, tensor: int) -> tuple[int, ...]:
        lib = self._lib
        return tuple(int(lib.TfLiteTensorDim(tensor, i)) for i in range(lib.TfLiteTensorNumDims(tensor)))

    def _dtype(self, tensor: int) -> Any:
        code = int(self._lib.TfLiteTensorType(tensor))
        if code not in _DTYPES:
            raise ModelError(f"{self.path}: unsupported tensor type {code}")
        return _DTYPES[code]

    def _invoke(self, x: np.ndarray) -> None:
        lib = self._lib
        data = np.ascontiguousarray(x, dtype=self.input_dtype)
        if lib.TfLiteTensorCopyFromBuffer(self._in, data.ctypes.data, data.nbytes) != 0:
            raise ModelError(f"{self.path}: input of {data.nbytes} bytes does not fit shape "
                             f"{self.input_shape}")
        if lib.TfLiteInterpreterInvoke(self._interpreter) != 0:
            raise ModelError(f"{self.path}: inference failed ({self._error_text()})")

    def run(self, x: np.ndarray) -> np.ndarray:
        """Invoke on `x` (already of the input's dtype and size); returns a view of the output buffer."""
        self._invoke(x)
        out = self._out_buf
        self._lib.TfLiteTensorCopyToBuffer(self._out, out.ctypes.data, out.nbytes)
        return out

    def run_all(self, x: np.ndarray) -> list[np.ndarray]:
        """Invoke on `x`; returns a copy of every output tensor (for models with several outputs)."""
        self._invoke(x)
        lib = self._lib
        outputs = []
        for i in range(int(lib.TfLiteInterpreterGetOutputTensorCount(self._interpreter))):
            tensor = lib.TfLiteInterpreterGetOutputTensor(self._interpreter, i)
            out = np.empty(self._shape(tensor), dtype=self._dtype(tensor))
            lib.TfLiteTensorCopyToBuffer(tensor, out.ctypes.data, out.nbytes)
            outputs.append(out)
        return outputs

    def reset(self) -> None:
        """Forget streaming state (a new interpreter on the same, already parsed, model)."""
        self._delete_interpreter()
        self._create_interpreter()

    def _delete_interpreter(self) -> None:
        self.input = self.output = np.zeros(0)  # the old views point into memory about to be freed
        if self._interpreter:
            self._lib.TfLiteInterpreterDelete(self._interpreter)
            self._interpreter = None

    def close(self) -> None:
        self._delete_interpreter()
        if getattr(self, "_model", None):
            self._lib.TfLiteModelDelete(self._model)
            self._model = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit the library may already be gone
            self.close()
