"""The captioner backends, keyed by `models.captioner.backend`, and the one place that builds them.

Each entry imports its backend only when chosen, so a board without the remote backend's needs (or
a laptop without onnxruntime) still loads the rest of edged.
"""

from __future__ import annotations

from collections.abc import Callable

from edged.config.schema import CaptionerConfig
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
        config.remote, max_new_tokens=config.max_new_tokens, repetition_penalty=config.repetition_penalty
    )


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
