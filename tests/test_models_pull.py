"""`edged models pull` from a local snapshot directory (the hub cannot be reached here)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

pytest.importorskip("torch", reason="pull exports the snapshot: needs the export extra")
pytest.importorskip("onnx_ir", reason="pull quantizes: needs the export extra")

from edged.cli import main
from edged.export.pull import SUMS, PullError, PullOptions, check_sums, pull
from edged.inference.manifest import load_manifest, sha256_file, verify
from tests.glm_fixture import SNAPSHOT

pytestmark = pytest.mark.export


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """The CLI configures structlog for its stderr; later tests must not log into a closed capture."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    """A local mirror laid out as <org>/<name>/ with a SHA256SUMS file, like a copied hub snapshot."""
    snap = tmp_path / "mirror" / "THUDM" / "glm-edge-v-2b"
    shutil.copytree(SNAPSHOT, snap)
    lines = [f"{sha256_file(p)}  {p.name}" for p in sorted(snap.iterdir())]
    (snap / SUMS).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path / "mirror"


def test_pull_from_local_source_exports_and_quantizes(
    mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The one command: checks the sums, exports, quantizes and keeps only the int4 variant."""
    out = tmp_path / "models" / "glm-edge-v-2b"
    assert main(["models", "pull", "glm-edge-v-2b", "--source", str(mirror), "--out", str(out)]) == 0
    assert "ready" in capsys.readouterr().out
    m = load_manifest(out)
    assert list(m.variants) == ["int4"]
    assert m.source["repo"] == "THUDM/glm-edge-v-2b"
    verify(out, m)
    assert not (out / "decoder_model_merged.onnx").exists()
    assert (out / "decoder_model_merged.int4.onnx").is_file()


def test_corrupt_source_file_stops_the_pull(mirror: Path, tmp_path: Path) -> None:
    """A snapshot file that differs from SHA256SUMS is named, and nothing is exported."""
    weights = mirror / "THUDM" / "glm-edge-v-2b" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(PullError, match=r"model.safetensors is corrupt \(sha256 differs from .*SHA256SUMS\)"):
        pull(PullOptions(model="glm-edge-v-2b", out=out, source=mirror))
    assert not out.exists()


def test_sums_are_optional_and_counted(tmp_path: Path) -> None:
    """Without SHA256SUMS nothing is checked; with it every listed file is."""
    snap = tmp_path / "s"
    shutil.copytree(SNAPSHOT, snap)
    assert check_sums(snap) == 0
    (snap / SUMS).write_text(f"{sha256_file(snap / 'config.json')}  config.json\n", encoding="utf-8")
    assert check_sums(snap) == 1


def test_unknown_model_and_empty_source(tmp_path: Path) -> None:
    """Unknown names and directories without a snapshot are clear errors."""
    with pytest.raises(PullError, match="unknown model 'glm-9000'"):
        pull(PullOptions(model="glm-9000", out=tmp_path / "o"))
    with pytest.raises(PullError, match="holds no snapshot"):
        pull(PullOptions(model="glm-edge-v-2b", out=tmp_path / "o", source=tmp_path))
