"""Parity with the torch reference and reproducibility of the exporter (needs the export extra).

The reference is rebuilt from native transformers classes (GlmForCausalLM, SiglipVisionModel) plus
edged's adapter, from the committed tiny snapshot; each stage of the ONNX bundle is compared with it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip(
    "torch", reason="parity needs the export extra (torch); pip install 'edged[export]'"
)
pytest.importorskip("transformers", reason="parity needs the export extra (transformers)")

from edged.export.bundle import ExportOptions, export  # noqa: E402
from edged.export.parity import compare, failures  # noqa: E402
from edged.export.prompt_assets import prompt_spec  # noqa: E402
from edged.export.quantize import QuantizeOptions, quantize_bundle  # noqa: E402
from edged.export.random_snapshot import write_random_snapshot  # noqa: E402
from edged.export.reference import Reference  # noqa: E402
from edged.export.source_config import ConfigMismatch, parse_config, read_config  # noqa: E402
from edged.export.weights import SnapshotWeights, WeightError, check_keys, lm_names, vision_names  # noqa: E402
from edged.inference.images import load_image  # noqa: E402
from edged.inference.manifest import load_manifest, sha256_file  # noqa: E402
from tests import glm_quant as q  # noqa: E402
from tests.glm_fixture import BUNDLE, FP32_SPREAD, SNAPSHOT, captioner, goldens  # noqa: E402

pytestmark = pytest.mark.export
GOLDEN = goldens()


@pytest.fixture(scope="module")
def reference() -> Reference:
    ref = Reference(read_config(SNAPSHOT))
    ref.load(SnapshotWeights(SNAPSHOT))
    return ref


@pytest.mark.parametrize("name", GOLDEN["images"])
def test_every_stage_matches_the_torch_reference(reference: Reference, name: str) -> None:
    """Pixels, image rows, prefill logits and greedy tokens agree within the spec's limits."""
    stages = compare(captioner(), reference, SNAPSHOT, load_image(BUNDLE / name), GOLDEN["max_new_tokens"])
    assert failures(stages) == []
    assert stages["pixels_max_abs"] <= 1e-6
    assert stages["reference_tokens"] == GOLDEN["variants"]["fp32"][name]["tokens"]


def test_exporter_reproduces_the_committed_fixture(tmp_path: Path) -> None:
    """Exporting and quantizing the committed snapshot again gives the committed bundle. What does not
    depend on the CPU is compared exactly: graph structure, the checkpoint's weights, the fp16 table,
    the tokenizer, the prompt, the int8 encoder (numpy quantizer) and fp32 tokens; what comes out of
    libm or kernels within its tolerance: rotary tables, int4 codes at exact ties (the C++ quantizer
    multiplies by 1/scale), fp32 margins and image-row statistics."""
    out = tmp_path / "bundle"
    m = export(ExportOptions(snapshot=SNAPSHOT, out=out, name="glm-edge-v-tiny"))
    committed = load_manifest(BUNDLE)
    for name in ("vision_encoder.onnx", "embed_tokens.f16.npy", "tokenizer.json"):
        assert m.files[name].sha256 == committed.files[name].sha256, name
    rotary = {"cos_cache": 1e-6, "sin_cache": 1e-6}  # float32 cos/sin: a few ulp between libms
    assert q.graph_differences(_graph(out, q.DECODER), _graph(BUNDLE, q.DECODER), close=rotary) == []
    assert m.prompt == committed.prompt
    for name in GOLDEN["images"]:
        fresh, golden = m.goldens["variants"]["fp32"][name], GOLDEN["variants"]["fp32"][name]
        assert (fresh["tokens"], fresh["text"]) == (golden["tokens"], golden["text"]), name
        np.testing.assert_allclose(fresh["margins"], golden["margins"], atol=2 * FP32_SPREAD, rtol=0)
        for stat, value in fresh["image_rows"].items():
            assert value == pytest.approx(golden["image_rows"][stat], rel=1e-4, abs=1e-3), (name, stat)

    quantize_bundle(out)
    assert sha256_file(out / q.VISION_INT8) == committed.files[q.VISION_INT8].sha256
    int4, int4_committed = _graph(out, q.DECODER_INT4), _graph(BUNDLE, q.DECODER_INT4)
    packed = frozenset(n for n in q.initializers(int4) if n.endswith(("_Q4", "_scales")))
    assert q.graph_differences(int4, int4_committed, close=rotary, skip=packed) == []
    # The fp32 weights are the committed ones bit for bit (above), and both int4 graphs hold them on the
    # nearest grid points (here and in test_glm_quantized), so their codes differ at exact ties only.
    fp32 = q.matmul_weights(_graph(BUNDLE, q.DECODER))
    block = QuantizeOptions().block_size
    assert q.grid_problems(fp32, q.int4_grids(int4), q.int4_block_scale(block)) == []


def _graph(bundle: Path, name: str) -> onnx.ModelProto:
    return onnx.load(bundle / name)


def test_random_snapshot_is_reproducible(tmp_path: Path) -> None:
    """The tiny random snapshot is a pure function of its seed."""
    out = write_random_snapshot(tmp_path / "snap", "tiny", seed=0)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert sha256_file(out / name) == sha256_file(SNAPSHOT / name), name


def _resave(snapshot: Path, out: Path, drop: str = "", add: str = "") -> Path:
    from safetensors.torch import load_file, save_file

    shutil.copytree(snapshot, out)
    tensors = load_file(str(out / "model.safetensors"))
    if drop:
        del tensors[drop]
    if add:
        tensors[add] = torch.zeros(2)
    save_file(tensors, str(out / "model.safetensors"))
    return out


def test_missing_tensor_fails_the_export(tmp_path: Path) -> None:
    """A checkpoint without one tensor is rejected before anything is written."""
    snap = _resave(SNAPSHOT, tmp_path / "s", drop="model.layers.1.mlp.down_proj.weight")
    with pytest.raises(WeightError, match=r"1 missing \(first: model.layers.1.mlp.down_proj.weight\)"):
        export(ExportOptions(snapshot=snap, out=tmp_path / "b"))
    assert not (tmp_path / "b" / "decoder_model_merged.onnx").exists()


def test_unexpected_tensor_fails_but_siglip_head_is_ignored(tmp_path: Path) -> None:
    """Extra tensors are errors, except the SigLIP pooling head the model never uses."""
    sc = read_config(SNAPSHOT)
    names = SnapshotWeights(SNAPSHOT).names()
    assert any(".vision_model.head." in n for n in names)
    check_keys(names, lm_names(sc.lm) + vision_names(sc.vision))
    with pytest.raises(WeightError, match="unexpected"):
        check_keys([*names, "model.layers.0.extra.weight"], lm_names(sc.lm) + vision_names(sc.vision))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"partial_rotary_factor": 0.5}, "partial_rotary_factor 0.5 is not supported"),
        ({"partial_rotary_factor": None}, "no partial_rotary_factor"),
        ({"model_type": "llama"}, "model_type is 'llama'"),
        ({"num_key_value_heads": 3}, "not a multiple"),
    ],
)
def test_config_is_asserted(change: dict[str, object], message: str) -> None:
    """The exporter refuses configs its graphs cannot express, saying why."""
    raw = json.loads((SNAPSHOT / "config.json").read_text(encoding="utf-8"))
    raw.update(change)
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(ConfigMismatch, match=message):
        parse_config(raw)


def test_vision_grid_must_be_even() -> None:
    """An image size the stride-2 adapter cannot halve is rejected."""
    raw = json.loads((SNAPSHOT / "config.json").read_text(encoding="utf-8"))
    raw["vision_config"]["image_size"] = 42
    with pytest.raises(ConfigMismatch, match="even grid"):
        parse_config(raw)


def test_template_image_count_must_match_the_encoder(tmp_path: Path) -> None:
    """A chat template with the wrong number of image tokens stops the export."""
    from tokenizers import Tokenizer

    snap = tmp_path / "s"
    shutil.copytree(SNAPSHOT, snap)
    cfg_path = snap / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["chat_template"] = cfg["chat_template"].replace("range(6)", "range(5)")
    cfg_path.write_text(json.dumps(cfg), encoding="utf-8")
    tok = Tokenizer.from_file(str(snap / "tokenizer.json"))
    sc = read_config(snap)
    with pytest.raises(ConfigMismatch, match="renders 5 image tokens; the vision encoder makes 6"):
        prompt_spec(snap, tok, sc.image_token_id, sc.vision.num_image_tokens)


def test_external_data_bundle_quantizes_twice_to_the_same_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With weights in `.onnx.data` files (as for 2B), quantizing again replaces outputs, not grows them."""
    from edged.export import bundle

    monkeypatch.setattr(bundle, "EXTERNAL_ABOVE", 0)
    out = tmp_path / "b"
    m = export(ExportOptions(snapshot=SNAPSHOT, out=out, golden_images=1, golden_tokens=4))
    assert m.files["decoder_model_merged.onnx"].external_data == "decoder_model_merged.onnx.data"
    first = quantize_bundle(out)
    second = quantize_bundle(out)
    for name in ("decoder_model_merged.int4.onnx.data", "vision_encoder.int8.onnx.data"):
        assert second.files[name].size == first.files[name].size, name
        assert second.files[name].sha256 == first.files[name].sha256, name
    fixture = load_manifest(BUNDLE).goldens["variants"]["fp32"][GOLDEN["images"][0]]["tokens"][:4]
    assert second.goldens["variants"]["fp32"][GOLDEN["images"][0]]["tokens"] == fixture
