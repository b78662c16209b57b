"""`edged models pull` from a local snapshot directory and from a hub endpoint on loopback."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

pytest.importorskip("torch", reason="pull exports the snapshot: needs the export extra")
pytest.importorskip("onnx_ir", reason="pull quantizes: needs the export extra")

from edged.cli import main
from edged.export.pull import SUMS, PullError, PullOptions, check_sums, pull
from edged.inference.downloads import DownloadError
from edged.inference.manifest import load_manifest, sha256_file, verify
from tests.fake_hub import HubRepo, serve_hub
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


@pytest.fixture
def hub_repo(tmp_path: Path) -> HubRepo:
    """The tiny snapshot as the hub would hold it: weights an LFS file, plus a GGUF no export reads."""
    root = tmp_path / "hub"
    shutil.copytree(SNAPSHOT, root)
    (root / "ggml-model-f16.gguf").write_bytes(b"GGUF" + bytes(64))
    return HubRepo("THUDM/glm-edge-v-2b", root, lfs={"model.safetensors", "ggml-model-f16.gguf"})


def test_pull_from_a_hub_endpoint(hub_repo: HubRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The download path end to end against a hub on loopback (fake: the real hub is unreachable here)."""
    out = tmp_path / "models" / "glm-edge-v-2b"
    with serve_hub(hub_repo) as url:
        argv = ["models", "pull", "glm-edge-v-2b", "--endpoint", url, "--cache-dir", str(tmp_path / "cache")]
        assert main([*argv, "--out", str(out)]) == 0
    assert "ready" in capsys.readouterr().out
    m = load_manifest(out)
    assert list(m.variants) == ["int4"]
    verify(out, m)
    fetched = {r.rsplit("/", 1)[-1] for r in hub_repo.requests if r.startswith("GET") and "/resolve/" in r}
    assert "model.safetensors" in fetched and "config.json" in fetched
    assert "ggml-model-f16.gguf" not in fetched, "only the files an export reads are fetched"


def test_hub_file_that_fails_its_sha256_stops_the_pull(hub_repo: HubRepo, tmp_path: Path) -> None:
    """Weights whose bytes differ from the hub's LFS sha256 are named, and nothing is exported."""
    hub_repo.corrupt.add("model.safetensors")
    out = tmp_path / "out"
    corrupt = r"model.safetensors is corrupt \(sha256 differs"
    with serve_hub(hub_repo) as url, pytest.raises(DownloadError, match=corrupt):
        pull(PullOptions(model="glm-edge-v-2b", out=out, endpoint=url, cache_dir=tmp_path / "cache"))
    assert not out.exists()


def test_unreachable_hub_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No network: the error names the repository and the endpoint and points at --source."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once the socket closes
    argv = ["models", "pull", "glm-edge-v-2b", "--endpoint", url, "--cache-dir", str(tmp_path / "cache")]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"cannot fetch THUDM/glm-edge-v-2b from {url}" in err
    assert "--source" in err
