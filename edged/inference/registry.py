"""The captioner backends, keyed by `models.captioner.backend`, and the one place that builds them.

Each entry imports its backend only when chosen, so a board without the remote backend's needs (or
a laptop without onnxruntime) still loads the rest of edged.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edged.config.schema import CaptionerConfig, RemoteConfig
from edged.inference.protocol import Captioner, ModelUnavailable
from edged.logs import get_logger


def _onnx(config: CaptionerConfig) -> Captioner:
    from edged.inference.glm_edge_v import GlmEdgeVCaptioner

    return GlmEdgeVCaptioner(config)


def _remote(config: CaptionerConfig) -> Captioner:
    from edged.inference.remote import RemoteCaptioner

    if config.remote is None:
        raise ModelUnavailable(
            "models.captioner.backend is remote but models.captioner.remote is not set",
            "add a remote: {url: ...} section",
        )
    return RemoteCaptioner(
        config.remote, max_new_tokens=config.max_new_tokens, repetition_penalty=config.repetition_penalty,
        prepare=_face_blur(config.remote) if config.remote.blur_faces else None,
    )


def _face_blur(remote: RemoteConfig) -> Callable[[np.ndarray], np.ndarray]:
    """Pixelate faces in every frame sent to the remote server; a missing detector model is a clear error."""
    import threading

    from edged.analysis.faces import FaceDetector, blur_faces
    from edged.analysis.kws.errors import ModelError

    if remote.face_model is None or not remote.face_model.is_file():
        raise ModelUnavailable(f"models.captioner.remote.blur_faces needs the face detector ({remote.face_model})",
                               "run `edged models pull face-detector`")
    try:
        detector = FaceDetector(remote.face_model)
    except ModelError as exc:
        raise ModelUnavailable(str(exc), "run `edged models pull face-detector`") from None
    lock = threading.Lock()

    def blur(image: np.ndarray) -> np.ndarray:
        with lock:
            return blur_faces(image, detector.detect(image))

    return blur


BACKENDS: dict[str, Callable[[CaptionerConfig], Captioner]] = {
    "onnx": _onnx,
    "remote": _remote,
}


def load_captioner(config: CaptionerConfig) -> Captioner:
    """Build and warm up the configured captioner; `ModelUnavailable` says why not and what fixes it."""
    if config.backend == "none":
        raise ModelUnavailable("captioning is disabled (models.captioner.backend: none)")
    factory = BACKENDS.get(config.backend)
    if factory is None:
        raise ModelUnavailable(
            f"unknown captioner backend {config.backend!r}", f"use one of: {', '.join(BACKENDS)}"
        )
    return factory(config)


def try_load_captioner(config: CaptionerConfig) -> Captioner | None:
    """`load_captioner`, or None after one log line saying why and what fixes it (the daemon goes on)."""
    try:
        return load_captioner(config)
    except ModelUnavailable as exc:
        get_logger(component="captioner").error(
            "captioner_unavailable", error=str(exc).split("; ")[0], fix=exc.hint, backend=config.backend
        )
        return None
