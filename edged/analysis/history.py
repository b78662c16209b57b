"""The recent analysed frames of one camera, kept small, for frame choice, snapshots and captions."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from edged.analysis.scene import FrameQuality, SceneSignature
from edged.sources.frame import Frame

WORKING_LONG_SIDE = 768  # what inference and snapshots need (GLM-Edge-V sees 672 px); keeps history small
UNMEASURED = FrameQuality(0.0, 0.0)


@dataclass(frozen=True, eq=False)
class AnalysedFrame:
    """A frame after analysis: a working-size copy (privacy masks blanked) plus the scores frame choice uses."""

    camera: str
    seq: int
    ts: float
    wall_ts: float
    pts: float
    image: np.ndarray  # BGR, long side <= WORKING_LONG_SIDE, read-only
    quality: FrameQuality = UNMEASURED
    motion_area: float = 0.0
    motion: bool = False
    calibrating: bool = False
    signature: SceneSignature | None = None

    @property
    def sharpness(self) -> float:
        return self.quality.sharpness


def working_copy(image: np.ndarray) -> np.ndarray:
    """The image scaled down to the working size (never up), read-only."""
    h, w = image.shape[:2]
    scale = WORKING_LONG_SIDE / max(h, w)
    out = image if scale >= 1.0 else cv2.resize(image, (round(w * scale), round(h * scale)),
                                                interpolation=cv2.INTER_LINEAR)
    out = np.ascontiguousarray(out)
    out.flags.writeable = False
    return out


def analysed(frame: Frame) -> AnalysedFrame:
    """An `AnalysedFrame` of `frame` with no scores (for tools that need only the working copy)."""
    return AnalysedFrame(frame.camera, frame.seq, frame.ts, frame.wall_ts, frame.pts, working_copy(frame.image))


class FrameHistory:
    """A ring of the last `size` analysed frames (thread-safe: the analyser writes, the scheduler reads)."""

    def __init__(self, size: int) -> None:
        self._frames: deque[AnalysedFrame] = deque(maxlen=max(1, size))
        self._lock = threading.Lock()

    def add(self, frame: AnalysedFrame) -> None:
        with self._lock:
            self._frames.append(frame)

    def latest(self) -> AnalysedFrame | None:
        with self._lock:
            return self._frames[-1] if self._frames else None

    def since(self, ts: float) -> list[AnalysedFrame]:
        """Frames captured at or after monotonic time `ts`, oldest first."""
        with self._lock:
            return [f for f in self._frames if f.ts >= ts]

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)


def encode_jpeg(image: np.ndarray, height: int, quality: int) -> bytes:
    """A JPEG of `image` scaled to `height` pixels (never up)."""
    h, w = image.shape[:2]
    if h > height:
        image = cv2.resize(image, (round(w * height / h), height), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(data)
