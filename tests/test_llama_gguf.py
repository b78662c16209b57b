"""The GGUF files the caption benchmark writes for llama.cpp, read back with the `gguf` package.

The benchmark compares edged with llama.cpp on the same weights: the snapshot's language model as a
`chatglm` GGUF and its vision tower as an `mmproj` GGUF (projector `adapter`, llama.cpp's GLM_EDGE).
That llama.cpp loads these files and computes the same image rows is checked by the benchmark itself
(`python -m benchmarks caption --e2e` ends with a fidelity check through llama.cpp, which the test
environment does not compile); here the files' keys, tensor names, shapes and values are checked against
the snapshot, so a renamed or forgotten tensor fails in CI, not in a benchmark run weeks later.
"""

from __future__ import annotations

from pathlib import Path

import gguf  # the dev extra has it (pure Python); llama-cpp-python, which compiles, is only in bench
import numpy as np
import pytest

from benchmarks.llama_mmproj import tensor_map, write_mmproj
from benchmarks.llama_ref import write_gguf_f16
from edged.export.random_snapshot import write_random_snapshot
from edged.export.source_config import read_config
from edged.export.weights import SnapshotWeights


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_snapshot(tmp_path_factory.mktemp("gguf") / "snap", "tiny", seed=3)


def _fields(reader: object) -> dict[str, object]:
    return {name: field.contents() for name, field in reader.fields.items()}  # type: ignore[attr-defined]


def test_mmproj_holds_every_vision_tensor_with_llama_cpp_names(snapshot: Path, tmp_path: Path) -> None:
    out = tmp_path / "mmproj.gguf"
    write_mmproj(snapshot, out)
    reader = gguf.GGUFReader(str(out))
    fields = _fields(reader)
    v = read_config(snapshot).vision
    assert fields["clip.projector_type"] == "adapter"
    assert fields["clip.has_vision_encoder"] is True
    assert fields["clip.vision.block_count"] == v.num_layers
    assert fields["clip.vision.embedding_length"] == v.hidden_size
    assert fields["clip.vision.image_size"] == v.image_size
    weights = SnapshotWeights(snapshot)
    vision = {n for n in weights.names() if n.startswith("model.vision.")}
    mapping = tensor_map(v.num_layers)
    # everything of the tower and adapter but SigLIP's pooling head, which GLM-Edge-V does not use
    assert vision - set(mapping) == {n for n in vision if ".head." in n}
    tensors = {t.name: t for t in reader.tensors}
    assert set(tensors) == set(mapping.values())
    for src, dst in mapping.items():
        expected = np.asarray(weights.get(src)).squeeze()
        got = np.asarray(tensors[dst].data)
        assert got.shape == expected.shape, dst
        assert got.dtype == (np.float16 if expected.ndim >= 2 else np.float32), dst
        np.testing.assert_allclose(got.astype(np.float32), expected, rtol=1e-3, atol=1e-4, err_msg=dst)


def test_language_model_gguf_fuses_qkv_in_llama_cpp_order(snapshot: Path, tmp_path: Path) -> None:
    out = tmp_path / "lm.gguf"
    write_gguf_f16(snapshot, out)
    reader = gguf.GGUFReader(str(out))
    fields = _fields(reader)
    lm = read_config(snapshot).lm
    assert fields["general.architecture"] == "chatglm"
    assert fields["chatglm.block_count"] == lm.num_layers
    assert fields["chatglm.attention.head_count_kv"] == lm.num_kv_heads
    tensors = {t.name: np.asarray(t.data) for t in reader.tensors}
    assert len(tensors) == 3 + 6 * lm.num_layers
    weights = SnapshotWeights(snapshot)
    qkv = np.concatenate([weights.get(f"model.layers.0.self_attn.{x}_proj.weight") for x in "qkv"], axis=0)
    np.testing.assert_allclose(tensors["blk.0.attn_qkv.weight"].astype(np.float32), qkv, rtol=1e-3, atol=1e-4)
