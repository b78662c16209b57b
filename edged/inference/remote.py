"""The `remote` backend: an OpenAI-compatible chat-completions endpoint with the frame as a JPEG.

For users who outgrow the board and run a llama.cpp server, Ollama or vLLM on a GPU box on the LAN.
The frame is scaled to `image_width`, sent as a base64 data URL next to the prompt; with a token
callback the answer is streamed (server-sent events) and cancellation and the deadline are checked
between chunks. Failed requests (connection errors, 429, 5xx) are retried with doubling back-off;
4xx answers are not. The API key is read from its secret file and only ever sent in the header.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from edged.config.schema import RemoteConfig
from edged.inference.protocol import CaptionResult, FinishReason
from edged.logs import get_logger

_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class RemoteError(RuntimeError):
    """The endpoint failed; the message names the URL, the status and what the server said."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def encode_jpeg(image: np.ndarray, width: int, quality: int = 90) -> bytes:
    """The BGR frame scaled to `width` (never up) and JPEG-encoded."""
    import cv2

    h, w = image.shape[:2]
    if w > width:
        image = cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode the frame as JPEG")
    return bytes(buf)


class RemoteCaptioner:
    """Captions frames through a remote OpenAI-compatible server."""

    def __init__(
        self,
        config: RemoteConfig,
        *,
        max_new_tokens: int = 48,
        repetition_penalty: float = 1.0,
        probe: bool = True,
        prepare: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.config = config
        self._prepare = prepare  # e.g. blur faces: runs on the frame before it leaves the board
        self.base = config.url.rstrip("/")
        self.name = f"remote:{config.model or self.base}"
        self.max_new_tokens = max_new_tokens
        self.repetition_penalty = repetition_penalty
        self._key = config.api_key.reveal() if config.api_key is not None else None
        self._log = get_logger(component="captioner", endpoint=self.base)
        if probe:
            self._probe()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        return headers

    def _probe(self) -> None:
        """Warm-up: ask for the model list once; an unreachable server is logged, not fatal."""
        req = urllib.request.Request(f"{self.base}/models", headers=self._headers())
        try:
            with urllib.request.urlopen(req, timeout=min(self.config.timeout, 5.0)):
                pass
            self._log.info("remote_captioner_ready", model=self.config.model)
        except (urllib.error.URLError, OSError) as exc:
            self._log.warning(
                "remote_unreachable", error=str(exc), hint="captions will be retried per request"
            )

    def request_body(
        self, image: np.ndarray, prompt: str, max_new_tokens: int, stream: bool
    ) -> dict[str, Any]:
        if self._prepare is not None:
            image = self._prepare(image)
        jpeg = base64.b64encode(encode_jpeg(image, self.config.image_width)).decode("ascii")
        content = [
            {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{jpeg}"}},
            {"type": "text", "text": prompt},
        ]
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_new_tokens,
            "temperature": 0,
            "stream": stream,
        }
        if self.config.model:
            body["model"] = self.config.model
        if self.repetition_penalty != 1.0:
            body["repeat_penalty"] = self.repetition_penalty  # llama.cpp's and Ollama's name for it
        return body

    def caption(
        self,
        image: np.ndarray,
        prompt: str,
        *,
        max_new_tokens: int | None = None,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> CaptionResult:
        """Caption a BGR frame, or answer `prompt` about it, on the remote server."""
        t0 = time.perf_counter()
        stream = on_token is not None or cancel is not None
        data = json.dumps(
            self.request_body(image, prompt, max_new_tokens or self.max_new_tokens, stream)
        ).encode()
        t_encoded = time.perf_counter()
        attempt = 0
        while True:
            try:
                text, reason = self._send(data, stream, deadline, cancel, on_token)
                break
            except RemoteError as exc:
                if not exc.retryable or attempt >= self.config.retries or self._expired(deadline):
                    raise
                delay = 0.5 * 2**attempt
                attempt += 1
                self._log.warning("remote_retry", attempt=attempt, error=str(exc), delay_s=delay)
                time.sleep(delay)
        timings = {
            "encode_ms": (t_encoded - t0) * 1000.0,
            "total_ms": (time.perf_counter() - t0) * 1000.0,
            "attempts": float(attempt + 1),
        }
        return CaptionResult(
            text=text.strip(), tokens=(), model=self.name, finish_reason=reason, timings=timings
        )

    @staticmethod
    def _expired(deadline: float | None) -> bool:
        return deadline is not None and time.monotonic() >= deadline

    def _timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self.config.timeout
        return max(0.1, min(self.config.timeout, deadline - time.monotonic()))

    def _send(
        self,
        data: bytes,
        stream: bool,
        deadline: float | None,
        cancel: threading.Event | None,
        on_token: Callable[[str], None] | None,
    ) -> tuple[str, FinishReason]:
        url = f"{self.base}/chat/completions"
        req = urllib.request.Request(url, data=data, headers=self._headers(), method="POST")
        try:
            resp = urllib.request.urlopen(req, timeout=self._timeout(deadline))
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode("utf-8", "replace")
            raise RemoteError(
                f"{url}: HTTP {exc.code} {exc.reason}: {detail}", retryable=exc.code in _RETRY_STATUS
            ) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise RemoteError(f"{url}: {getattr(exc, 'reason', exc)}", retryable=True) from None
        with resp:
            try:
                if not stream:
                    return _parse_completion(url, resp.read())
                return self._read_stream(url, resp, deadline, cancel, on_token)
            except (TimeoutError, OSError) as exc:
                raise RemoteError(f"{url}: reading the answer failed: {exc}", retryable=False) from None

    def _read_stream(
        self,
        url: str,
        resp: Any,
        deadline: float | None,
        cancel: threading.Event | None,
        on_token: Callable[[str], None] | None,
    ) -> tuple[str, FinishReason]:
        parts: list[str] = []
        reason: FinishReason = "length"
        for event in _sse_events(resp):
            if cancel is not None and cancel.is_set():
                return "".join(parts), "cancelled"
            if self._expired(deadline):
                return "".join(parts), "deadline"
            choice = (event.get("choices") or [{}])[0]
            piece = (choice.get("delta") or {}).get("content") or ""
            if piece:
                parts.append(piece)
                if on_token is not None:
                    on_token(piece)
            if choice.get("finish_reason"):
                reason = "stop" if choice["finish_reason"] == "stop" else "length"
        if not parts and reason == "length":
            raise RemoteError(f"{url}: the stream ended without an answer")
        return "".join(parts), reason

    def close(self) -> None:
        """Nothing to release: each request opens its own connection."""


def _parse_completion(url: str, raw: bytes) -> tuple[str, FinishReason]:
    try:
        body = json.loads(raw)
        choice = body["choices"][0]
        text = choice["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError):
        raise RemoteError(f"{url}: not a chat-completions answer: {raw[:200]!r}") from None
    return text, "stop" if choice.get("finish_reason", "stop") == "stop" else "length"


def _sse_events(resp: Any) -> Iterator[dict[str, Any]]:
    """JSON payloads of `data:` lines until `data: [DONE]`."""
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            yield json.loads(payload)
        except ValueError:
            continue
