"""Faces blurred before a frame leaves the board: the real detector model on a real photograph.

The detector is MediaPipe's BlazeFace short-range TFLite file, fetched the way users get it
(`edged models pull face-detector`: from the package that ships it, checked by sha256) into a cache
the test run keeps. The photograph is the portrait matplotlib ships as sample data.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edged.analysis.faces import MODEL_FILE, Face, FaceDetector, anchors, blur_faces, decode, suppress
from edged.config.schema import CaptionerConfig, RemoteConfig
from edged.inference.protocol import ModelUnavailable
from edged.inference.registry import load_captioner

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "face-detector"


@pytest.fixture(scope="session")
def face_model() -> Path:
    """The real model, pulled once per checkout by the command users run."""
    out = subprocess.run([sys.executable, "-m", "edged", "models", "pull", "face-detector", "--out", str(CACHE)],
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    return CACHE / MODEL_FILE


@pytest.fixture(scope="session")
def portrait() -> np.ndarray:
    from matplotlib import cbook

    image = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    assert image is not None
    return image


def test_anchor_layout_matches_the_model() -> None:
    """896 anchors: 16x16 cells x 2 and 8x8 cells x 6, centres inside the input."""
    a = anchors()
    assert a.shape == (896, 2)
    assert a.min() > 0
    assert a.max() < 1
    assert np.allclose(a[0], [1 / 32, 1 / 32])


def test_decode_and_suppress() -> None:
    """A confident box decodes around its anchor; overlapping duplicates collapse to the best one."""
    boxes = np.zeros((896, 16), np.float32)
    scores = np.full(896, -20.0, np.float32)
    boxes[0, 2:4] = 16  # 16 px wide and tall at the first anchor (4, 4)
    scores[0] = 5.0
    [(x0, y0, x1, y1, p)] = decode(boxes, scores, 0.5)
    assert (round(x0 * 128), round(y0 * 128), round(x1 * 128), round(y1 * 128)) == (-4, -4, 12, 12)
    assert p > 0.99
    a, b = Face(0.1, 0.1, 0.3, 0.3, 0.9), Face(0.11, 0.1, 0.31, 0.3, 0.8)
    assert suppress([b, a]) == [a]


def test_the_face_in_a_portrait_is_found(face_model: Path, portrait: np.ndarray) -> None:
    """One face, where the face is (the upper middle of the portrait)."""
    faces = FaceDetector(face_model).detect(portrait)
    assert len(faces) == 1
    f = faces[0]
    assert f.score > 0.8
    assert 0.25 < (f.x0 + f.x1) / 2 < 0.75
    assert 0.2 < (f.y0 + f.y1) / 2 < 0.6


def test_a_small_face_in_a_wide_frame_is_found(face_model: Path, portrait: np.ndarray) -> None:
    """The portrait at a third of its size inside a 1280x720 frame: found by the tiled search."""
    frame = np.full((720, 1280, 3), 90, np.uint8)
    small = cv2.resize(portrait, (portrait.shape[1] // 3, portrait.shape[0] // 3))
    frame[200:200 + small.shape[0], 700:700 + small.shape[1]] = small
    faces = FaceDetector(face_model).detect(frame)
    assert len(faces) == 1
    assert 700 / 1280 < faces[0].x0 < faces[0].x1 < (700 + small.shape[1]) / 1280


def detail(image: np.ndarray) -> float:
    """Variance of the Laplacian: how much fine detail (eyes, mouth, skin texture) an image region holds."""
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def test_blurring_removes_the_face_and_nothing_else(face_model: Path, portrait: np.ndarray) -> None:
    """Inside the face box the detail is gone (and no confident face remains); outside the margin nothing changed.
    What is left is a head-shaped blur, which still reads as "a person" to a captioner."""
    detector = FaceDetector(face_model, threshold=0.75)
    faces = detector.detect(portrait)
    out = blur_faces(portrait, faces)
    h, w = portrait.shape[:2]
    f = faces[0]
    inside = (slice(int(f.y0 * h) + 2, int(f.y1 * h) - 2), slice(int(f.x0 * w) + 2, int(f.x1 * w) - 2))
    assert detail(out[inside]) < 0.1 * detail(portrait[inside])
    assert np.array_equal(out[h - 40:], portrait[h - 40:])
    assert detector.detect(out) == []


@pytest.fixture
def server() -> Iterator[tuple[list[dict[str, Any]], str]]:
    """A minimal OpenAI-compatible endpoint (it stands in for a llama.cpp server) that records requests."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._send({"data": []})

        def do_POST(self) -> None:
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self._send({"choices": [{"message": {"content": "A person."}, "finish_reason": "stop"}]})

        def _send(self, data: dict[str, Any]) -> None:
            body = json.dumps(data).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield seen, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def sent_image(request: dict[str, Any]) -> np.ndarray:
    url = request["messages"][0]["content"][0]["image_url"]["url"]
    data = base64.b64decode(url.split(",", 1)[1])
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_remote_backend_sends_no_face(face_model: Path, portrait: np.ndarray,
                                      server: tuple[list[dict[str, Any]], str]) -> None:
    """With blur_faces, what reaches the remote server has no confidently detectable face; without it, one."""
    seen, url = server
    for blur in (False, True):
        config = CaptionerConfig(backend="remote", remote=RemoteConfig(url=url, blur_faces=blur, face_model=face_model,
                                                                       image_width=512))
        captioner = load_captioner(config)
        assert captioner.caption(portrait, "Who is this?").text == "A person."
    detector = FaceDetector(face_model, threshold=0.75)
    assert len(detector.detect(sent_image(seen[0]))) == 1
    assert detector.detect(sent_image(seen[1])) == []


def test_blur_faces_without_the_model_names_the_command(tmp_path: Path) -> None:
    """A missing detector is a clear error naming `edged models pull face-detector`."""
    config = CaptionerConfig(backend="remote", remote=RemoteConfig(url="http://127.0.0.1:9/v1", blur_faces=True,
                                                                   face_model=tmp_path / "missing.tflite"))
    with pytest.raises(ModelUnavailable, match="edged models pull face-detector"):
        load_captioner(config)
