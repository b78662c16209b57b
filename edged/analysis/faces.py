"""Faces, found and blurred before a frame leaves the board (the remote captioner's privacy option).

The detector is MediaPipe's BlazeFace short-range model (a 230 KB TFLite file, Apache-2.0; `edged
models pull face-detector` fetches it), run single-threaded through edged's TFLite runner. Its 896
anchors are the standard SSD layout for a 128x128 input: strides 8 (16x16 cells, 2 anchors each) and
16 (8x8 cells, 6 anchors each), unit size. The model is made for faces near the camera, so a camera
frame is also searched in overlapping tiles, which finds faces a few metres away.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edged.analysis.kws.errors import ModelError
from edged.analysis.tflite import TfLiteModel

INPUT = 128
MODEL_FILE = "face_detection_short_range.tflite"  # fetched by `edged models pull face-detector`


@dataclass(frozen=True)
class Face:
    """A face box in 0..1 coordinates of the image, with the detector's confidence."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)


def anchors() -> np.ndarray:
    """(896, 2) anchor centres in 0..1 of the model input."""
    centres = []
    for stride, per_cell in ((8, 2), (16, 6)):
        cells = INPUT // stride
        ys, xs = np.mgrid[0:cells, 0:cells]
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


def decode(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[tuple[float, float, float, float, float]]:
    """Raw outputs (896, 16) and (896,) -> (x0, y0, x1, y1, score) in 0..1 of the model input."""
    prob = 1.0 / (1.0 + np.exp(-np.clip(scores.astype(np.float64), -80.0, 80.0)))
    keep = np.nonzero(prob >= threshold)[0]
    a = anchors()[keep]
    raw = boxes[keep]
    cx = a[:, 0] + raw[:, 0] / INPUT
    cy = a[:, 1] + raw[:, 1] / INPUT
    w, h = raw[:, 2] / INPUT, raw[:, 3] / INPUT
    return [(float(x - bw / 2), float(y - bh / 2), float(x + bw / 2), float(y + bh / 2), float(p))
            for x, y, bw, bh, p in zip(cx, cy, w, h, prob[keep], strict=True)]


def iou(a: Face, b: Face) -> float:
    ix = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    iy = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def suppress(faces: list[Face], overlap: float = 0.3) -> list[Face]:
    """Non-maximum suppression: the best-scoring box of each overlapping group."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if all(iou(face, k) < overlap for k in kept):
            kept.append(face)
    return kept


class FaceDetector:
    """Finds faces in BGR frames (not thread-safe: one per thread that blurs)."""

    def __init__(self, model: Path, threshold: float = 0.5, tile_px: int = 400) -> None:
        self.model = TfLiteModel(model)
        if self.model.input_shape != (1, INPUT, INPUT, 3):
            raise ModelError(f"{model}: not a BlazeFace short-range model (input {self.model.input_shape})")
        self.threshold = threshold
        self.tile_px = tile_px  # the frame is also searched in tiles of about this size

    def detect(self, image: np.ndarray) -> list[Face]:
        """Every face in the image: the whole frame and overlapping tiles of it, merged."""
        h, w = image.shape[:2]
        regions = [(0, 0, w, h)]
        n = max(1, round(max(w, h) / self.tile_px))
        if n > 1:
            tw, th = min(w, int(w / n * 1.5)), min(h, int(h / n * 1.5))  # neighbouring tiles overlap
            for i in range(n):
                for j in range(n):
                    regions.append((int(i * (w - tw) / (n - 1)), int(j * (h - th) / (n - 1)), tw, th))
        found = [f for region in regions for f in self._detect_region(image, region)]
        return suppress(found)

    def _detect_region(self, image: np.ndarray, region: tuple[int, int, int, int]) -> list[Face]:
        x, y, rw, rh = region
        crop = image[y:y + rh, x:x + rw]
        side = max(rw, rh)  # letterbox: keep the aspect, pad to a square
        square = np.zeros((side, side, 3), np.uint8)
        square[:rh, :rw] = crop
        rgb = cv2.cvtColor(cv2.resize(square, (INPUT, INPUT), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        boxes, scores = self.model.run_all((rgb.astype(np.float32)[None] / 127.5) - 1.0)
        h, w = image.shape[:2]
        out = []
        for x0, y0, x1, y1, score in decode(boxes[0], scores[0, :, 0], self.threshold):
            out.append(Face(max(0.0, (x + x0 * side) / w), max(0.0, (y + y0 * side) / h),
                            min(1.0, (x + x1 * side) / w), min(1.0, (y + y1 * side) / h), score))
        return out

    def close(self) -> None:
        self.model.close()


def blur_faces(image: np.ndarray, faces: list[Face], margin: float = 0.25) -> np.ndarray:
    """A copy of `image` with every face (and a margin around it) pixelated beyond recognition."""
    out: np.ndarray = image.copy()
    h, w = out.shape[:2]
    for f in faces:
        mx, my = (f.x1 - f.x0) * margin, (f.y1 - f.y0) * margin
        x0, y0 = max(0, int((f.x0 - mx) * w)), max(0, int((f.y0 - my) * h))
        x1, y1 = min(w, int((f.x1 + mx) * w) + 1), min(h, int((f.y1 + my) * h) + 1)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        # A few coarse blocks, then smoothed: the head stays a head for the captioner, nobody is recognisable,
        # and the result no longer reads as a face even to a face detector.
        small = cv2.resize(out[y0:y1, x0:x1], (4, 5), interpolation=cv2.INTER_AREA)
        blocks = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        k = max(3, ((min(x1 - x0, y1 - y0) // 4) | 1))
        out[y0:y1, x0:x1] = cv2.GaussianBlur(blocks, (k, k), 0)
    return out
