"""Bundle loading: a missing or corrupt bundle is one clear error naming the file and the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edged.config.schema import CaptionerConfig
from edged.inference.manifest import BundleError, files_of_variant, load_manifest, verify
from edged.inference.protocol import ModelUnavailable
from edged.inference.registry import BACKENDS, load_captioner
from tests.glm_fixture import BUNDLE, config


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(BUNDLE, out, ignore=shutil.ignore_patterns(".ort-cache"))  # no cache from another run
    return out


def test_fixture_verifies() -> None:
    """Every file of the committed bundle matches its recorded size and sha256."""
    m = load_manifest(BUNDLE)
    verify(BUNDLE, m)
    assert set(m.variants) == {"fp32", "int8-vision", "int4"}
    assert m.default_variant == "int4"


def test_missing_bundle_names_the_pull_command(tmp_path: Path) -> None:
    """No directory at all: the error says how to get the model."""
    with pytest.raises(ModelUnavailable) as err:
        load_captioner(CaptionerConfig(path=tmp_path / "nope"))
    assert "does not exist" in str(err.value)
    assert "edged models pull glm-edge-v-2b" in err.value.hint


def test_directory_without_manifest_is_not_a_bundle(tmp_path: Path) -> None:
    """An empty directory is reported as missing its manifest."""
    with pytest.raises(BundleError, match=r"manifest\.json is missing"):
        load_manifest(tmp_path)


def test_missing_file_is_named(bundle: Path) -> None:
    """A deleted graph is named in the error, with the verify/pull fix."""
    (bundle / "decoder_model_merged.onnx").unlink()
    with pytest.raises(BundleError) as err:
        load_captioner(config(path=bundle))
    assert "decoder_model_merged.onnx is missing" in str(err.value)
    assert "edged models verify" in err.value.hint


def test_flipped_byte_is_corrupt(bundle: Path) -> None:
    """Same size, different content: the sha256 check catches it."""
    path = bundle / "vision_encoder.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"vision_encoder\.onnx is corrupt"):
        load_captioner(config(path=bundle))


def test_truncated_file_reports_sizes(bundle: Path) -> None:
    """A short file (an interrupted copy) is reported with both sizes, even with hashing off."""
    path = bundle / "embed_tokens.f16.npy"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BundleError, match=r"has 100 bytes, the manifest says \d+ \(truncated\?\)"):
        load_captioner(config(path=bundle, verify_hashes=False))


def test_only_the_chosen_variant_is_needed(bundle: Path) -> None:
    """Deleting the fp32 graphs does not stop the int4 variant from loading."""
    m = load_manifest(bundle)
    int4 = set(files_of_variant(m, m.variant("int4")))
    assert "decoder_model_merged.onnx" not in int4
    (bundle / "decoder_model_merged.onnx").unlink()
    cap = load_captioner(config(path=bundle, variant="int4"))
    assert cap.name == "glm-edge-v-tiny:int4"


def test_unknown_variant_lists_the_known_ones() -> None:
    """Asking for a variant the bundle lacks names the ones it has."""
    with pytest.raises(BundleError, match=r"no variant 'q2' \(has: fp32, int8-vision, int4\)"):
        load_manifest(BUNDLE).variant("q2")


def test_bad_manifest_json(bundle: Path) -> None:
    """A manifest that is not JSON is reported as invalid."""
    (bundle / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(BundleError, match="not a valid manifest"):
        load_manifest(bundle)


def test_newer_schema_version_is_refused(bundle: Path) -> None:
    """A bundle from a future exporter says to re-export."""
    path = bundle / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["schema_version"] = 99
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(BundleError) as err:
        load_manifest(bundle)
    assert "schema version 99" in str(err.value)
    assert "re-export" in err.value.hint


def test_registry_is_explicit_and_none_disables() -> None:
    """The backends are a plain dict; backend none is a ModelUnavailable, not a crash."""
    assert set(BACKENDS) == {"onnx", "remote"}
    with pytest.raises(ModelUnavailable, match="disabled"):
        load_captioner(CaptionerConfig(backend="none"))


def test_remote_backend_needs_its_section() -> None:
    """backend remote without a remote section says what to add."""
    with pytest.raises(ModelUnavailable, match="remote is not set"):
        load_captioner(CaptionerConfig(backend="remote"))


def test_optimized_graph_cache_is_written_and_reused(bundle: Path) -> None:
    """The first load writes optimised graphs to .ort-cache; the next load reads them and agrees."""
    from edged.inference.images import load_image

    image = load_image(bundle / "golden/wide.png")
    first = load_captioner(config(path=bundle, optimized_cache=True))
    cached = sorted(p.name for p in (bundle / ".ort-cache").iterdir())
    assert any(n.startswith("vision_encoder.") for n in cached)
    assert any(n.startswith("decoder_model_merged.") for n in cached)
    tokens = first.caption(image, "").tokens
    second = load_captioner(config(path=bundle, optimized_cache=True))
    assert sorted(p.name for p in (bundle / ".ort-cache").iterdir()) == cached
    assert second.caption(image, "").tokens == tokens


def test_optimized_graph_cache_holds_nothing_laid_out_for_this_cpu(bundle: Path) -> None:
    """The cached graphs stop before the layout rewrites (NCHWc blocks sized to this CPU's SIMD width:
    an AVX2 machine's cache gave garbage on an AVX-512 one), so a bundle directory carried to or
    shared with another machine stays correct; the rewrites run again on load."""
    import onnx

    for variant in ("fp32", "int8-vision", "int4"):
        load_captioner(config(path=bundle, variant=variant, optimized_cache=True))
    graphs = sorted((bundle / ".ort-cache").glob("*.onnx"))
    assert len(graphs) == 4  # both encoders, both decoders
    for graph in graphs:
        nodes = onnx.load(graph, load_external_data=False).graph.node
        assert [n.op_type for n in nodes if n.domain == "com.microsoft.nchwc"] == [], graph.name


def test_threads_zero_leaves_a_core(monkeypatch: pytest.MonkeyPatch) -> None:
    """threads: 0 means all cores but one, and never fewer than one."""
    from edged.inference import sessions

    monkeypatch.setattr(sessions.os, "cpu_count", lambda: 4)
    assert sessions.resolve_threads(0) == 3
    monkeypatch.setattr(sessions.os, "cpu_count", lambda: 1)
    assert sessions.resolve_threads(0) == 1
    assert sessions.resolve_threads(2) == 2


def test_missing_provider_is_logged_and_cpu_used() -> None:
    """A provider this onnxruntime lacks is named in a warning; the session still runs on the CPU."""
    from structlog.testing import capture_logs

    from edged.inference.sessions import resolve_providers

    with capture_logs() as logs:
        chosen = resolve_providers(["TensorrtExecutionProviderThatIsNotHere", "CPUExecutionProvider"])
    assert chosen == ["CPUExecutionProvider"]
    assert [e["provider"] for e in logs if e["event"] == "provider_missing"] == [
        "TensorrtExecutionProviderThatIsNotHere"
    ]


def test_try_load_logs_one_line_and_returns_none(tmp_path: Path) -> None:
    """A missing model is one error line naming the pull command; the caller keeps running."""
    from structlog.testing import capture_logs

    from edged.inference.registry import try_load_captioner

    with capture_logs() as logs:
        assert try_load_captioner(CaptionerConfig(path=tmp_path / "missing")) is None
    assert len(logs) == 1
    assert logs[0]["event"] == "captioner_unavailable"
    assert logs[0]["log_level"] == "error"
    assert "edged models pull glm-edge-v-2b" in logs[0]["fix"]
