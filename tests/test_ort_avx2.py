"""The onnxruntime copy the AVX2 benchmark rows run on: exactly MLAS's two feature tests change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from benchmarks.ort_avx2 import JE, JMP, MARKER, SITES, extension_module, patch_sites, write_copy

REPO = Path(__file__).resolve().parents[1]
AVX512_SITE = b"\x41\xf7\xc2\x00\x00\x01\x00\x74\x0e\x4c\x89\xc0\x48\xf7\xd0\xa8\xe0"
VNNI_SITE = b"\xb8\x07\x00\x00\x00\xb9\x01\x00\x00\x00\x0f\xa2\xa8\x10\x74\x38"


def test_each_feature_test_becomes_an_unconditional_jump() -> None:
    data = bytearray(b"\x90" * 100 + AVX512_SITE + b"\x74\x10" * 20 + VNNI_SITE + b"\xc3")
    before = bytes(data)
    changed = patch_sites(data, Path("module.so"))
    assert [c["feature"] for c in changed] == [s.feature for s in SITES]
    diffs = [i for i, (a, b) in enumerate(zip(before, data, strict=True)) if a != b]
    assert diffs == [100 + 7, 100 + len(AVX512_SITE) + 40 + 14]  # the two `je` opcodes, nothing else
    assert all(before[i] == JE and data[i] == JMP for i in diffs)


@pytest.mark.parametrize(("content", "message"), [
    (AVX512_SITE, "AVX-VNNI test found 0 times in module.so"),
    (AVX512_SITE * 2 + VNNI_SITE, "AVX-512 test found 2 times in module.so"),
])
def test_a_build_with_other_code_is_refused_by_name(content: bytes, message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        patch_sites(bytearray(content), Path("module.so"))


def test_the_copy_of_the_installed_wheel_differs_in_two_bytes_and_runs(tmp_path: Path) -> None:
    """The real wheel: patched copy, marker, and a model run through it in a child process."""
    write_copy(tmp_path)
    marker = json.loads((tmp_path / "onnxruntime" / "capi" / MARKER).read_text())
    assert marker["version"] == onnxruntime.__version__ and len(marker["changed"]) == 2
    original = np.fromfile(extension_module(Path(onnxruntime.__file__).parent), dtype=np.uint8)
    copy = np.fromfile(extension_module(tmp_path / "onnxruntime"), dtype=np.uint8)
    assert original.shape == copy.shape
    assert np.flatnonzero(original != copy).tolist() == sorted(int(c["offset"]) for c in marker["changed"])
    script = (
        "import numpy as np, onnxruntime as ort\n"
        "from onnx import helper, TensorProto, numpy_helper\n"
        "from benchmarks.ort_avx2 import restricted_to_avx2\n"
        "w = np.arange(64 * 48, dtype=np.float32).reshape(64, 48) / 1000\n"
        "g = helper.make_graph([helper.make_node('MatMul', ['x', 'w'], ['y'])], 'g',\n"
        "    [helper.make_tensor_value_info('x', TensorProto.FLOAT, [8, 64])],\n"
        "    [helper.make_tensor_value_info('y', TensorProto.FLOAT, [8, 48])], [numpy_helper.from_array(w, 'w')])\n"
        "m = helper.make_model(g, opset_imports=[helper.make_opsetid('', 17)])\n"
        "s = ort.InferenceSession(m.SerializeToString(), providers=['CPUExecutionProvider'])\n"
        "x = np.ones((8, 64), np.float32)\n"
        "print(restricted_to_avx2(), np.allclose(s.run(None, {'x': x})[0], x @ w, rtol=1e-5), ort.__file__)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    restricted, correct, where = out.stdout.split()
    assert (restricted, correct) == ("True", "True") and where.startswith(str(tmp_path))
