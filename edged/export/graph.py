"""A small ONNX graph builder that streams large initializers straight into an external-data file.

Weights are written as they are produced and dropped, so a multi-gigabyte decoder never sits in
memory as a whole; the ModelProto keeps only offsets into `<model>.onnx.data`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
MS_DOMAIN = "com.microsoft"
_EXTERNAL_MIN_BYTES = 1024


class GraphBuilder:
    """Nodes, initializers and I/O of one graph; `save()` writes `<path>` (+ `<path>.data`)."""

    def __init__(self, path: Path, name: str, external: bool) -> None:
        self.path = Path(path)
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._ids = itertools.count()
        self.data_name = self.path.name + ".data" if external else ""
        self._data = open(self.path.parent / self.data_name, "wb") if external else None  # noqa: SIM115

    def fresh(self, hint: str) -> str:
        """A unique value name."""
        return f"{hint}_{next(self._ids)}"

    def weight(self, name: str, array: np.ndarray) -> str:
        """Add an initializer; big ones go to the external-data file at once."""
        array = np.ascontiguousarray(array)
        if self._data is None or array.nbytes < _EXTERNAL_MIN_BYTES:
            self.initializers.append(numpy_helper.from_array(array, name))
            return name
        offset = self._data.tell()
        pad = (-offset) % 64  # keep tensors aligned for memory mapping
        if pad:
            self._data.write(b"\0" * pad)
            offset += pad
        self._data.write(array.tobytes())
        t = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape)
        t.data_location = TensorProto.EXTERNAL
        for key, value in (
            ("location", self.data_name),
            ("offset", str(offset)),
            ("length", str(array.nbytes)),
        ):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
        self.initializers.append(t)
        return name

    def const(self, array: np.ndarray | Sequence[int] | int, dtype: Any = np.int64) -> str:
        """A small constant initializer."""
        return self.weight(self.fresh("const"), np.asarray(array, dtype=dtype))

    def op(
        self,
        op_type: str,
        inputs: Sequence[str],
        n_out: int = 1,
        *,
        domain: str = "",
        name: str = "",
        outputs: Sequence[str] | None = None,
        **attrs: Any,
    ) -> list[str]:
        """Add a node; returns its output names."""
        outs = (
            list(outputs)
            if outputs is not None
            else [self.fresh(f"{name or op_type}_out") for _ in range(n_out)]
        )
        self.nodes.append(
            helper.make_node(
                op_type, list(inputs), outs, name=name or self.fresh(op_type), domain=domain or None, **attrs
            )
        )
        return outs

    def op1(self, op_type: str, inputs: Sequence[str], **kwargs: Any) -> str:
        """A node with one output."""
        return self.op(op_type, inputs, **kwargs)[0]

    def add_input(self, name: str, elem: int, shape: Sequence[int | str]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem, list(shape)))
        return name

    def add_output(self, name: str, elem: int, shape: Sequence[int | str]) -> None:
        self.outputs.append(helper.make_tensor_value_info(name, elem, list(shape)))

    def save(self) -> None:
        """Write the model file (and close the external-data file)."""
        if self._data is not None:
            self._data.close()
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
            producer_name="edged",
        )
        model.ir_version = 8
        onnx.save_model(model, str(self.path))


def linear_t(w: np.ndarray) -> np.ndarray:
    """A torch Linear weight [out, in] as the [in, out] right operand of MatMul."""
    return np.ascontiguousarray(w.T)
