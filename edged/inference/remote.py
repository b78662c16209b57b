"""The `remote` backend: an OpenAI-compatible chat-completions endpoint with the frame as a JPEG.

For users who outgrow the board and run a llama.cpp server, Ollama or vLLM on a GPU box on the LAN.
The frame is scaled to `image_width`, sent as a base64 data URL next to the prompt; with a token
callback the answer is streamed (server-sent events) and cancellation and the deadline are checked
between chunks. Failed requests (connection errors, 429, 5xx) are retried with doubling back-off;
4xx answers are not. The API key is read from its secret file and only ever sent in the header.

`look` (several prompts and yes/no questions about one frame) makes the JPEG once and sends one
request per question or prompt; the server encodes the image for each unless it caches prompts.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from edged.config.schema import RemoteConfig
from edged.inference.protocol import CaptionResult, FinishReason, Look, YesNo
from edged.inference.yesno import BadQuestion, question_prompt, validate_question
from edged.logs import get_logger

_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
TOP_LOGPROBS = 10  # enough to hold both "Yes" and "No" spellings on a server that ranks them


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
        self._logprobs = True  # until the server refuses them
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

    def image_url(self, image: np.ndarray) -> str:
        """The frame (faces blurred when configured) as a JPEG data URL: made once per look."""
        if self._prepare is not None:
            image = self._prepare(image)
        jpeg = base64.b64encode(encode_jpeg(image, self.config.image_width)).decode("ascii")
        return f"data:image/jpeg;base64,{jpeg}"

    def request_body(
        self, image: np.ndarray, prompt: str, max_new_tokens: int, stream: bool
    ) -> dict[str, Any]:
        return self._body(self.image_url(image), prompt, max_new_tokens, stream)

    def _body(self, url: str, prompt: str, max_new_tokens: int, stream: bool) -> dict[str, Any]:
        content = [
            {"type": "image_url", "image_url": {"url": url}},
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
        url = self.image_url(image)
        encode_ms = (time.perf_counter() - t0) * 1000.0
        return self._caption(url, prompt, max_new_tokens, deadline, cancel, on_token, t0, encode_ms)

    def _caption(
        self,
        url: str,
        prompt: str,
        max_new_tokens: int | None,
        deadline: float | None,
        cancel: threading.Event | None,
        on_token: Callable[[str], None] | None,
        t0: float,
        encode_ms: float,
    ) -> CaptionResult:
        stream = on_token is not None or cancel is not None
        body = self._body(url, prompt, max_new_tokens or self.max_new_tokens, stream)
        (text, reason), attempts = self._post(body, stream, deadline, cancel, on_token)
        timings = {
            "encode_ms": encode_ms,
            "total_ms": (time.perf_counter() - t0) * 1000.0,
            "attempts": float(attempts),
        }
        return CaptionResult(
            text=text.strip(), tokens=(), model=self.name, finish_reason=reason, timings=timings
        )

    def _post(
        self,
        body: dict[str, Any],
        stream: bool,
        deadline: float | None,
        cancel: threading.Event | None,
        on_token: Callable[[str], None] | None,
        *,
        raw: bool = False,
    ) -> tuple[Any, int]:
        """One request with retries: (text, finish reason) or, with `raw`, the parsed JSON answer."""
        data = json.dumps(body).encode()
        attempt = 0
        while True:
            try:
                return self._send(data, stream, deadline, cancel, on_token, raw=raw), attempt + 1
            except RemoteError as exc:
                if not exc.retryable or attempt >= self.config.retries or self._expired(deadline):
                    raise
                delay = 0.5 * 2**attempt
                attempt += 1
                self._log.warning("remote_retry", attempt=attempt, error=str(exc), delay_s=delay)
                time.sleep(delay)

    def look(
        self,
        image: np.ndarray,
        prompts: Sequence[str],
        questions: Sequence[str],
        *,
        max_new_tokens: int | None = None,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Look:
        """Questions, then prompts, about one frame: the JPEG is made once, each is its own request.

        A yes/no question asks for one token with its top log-probabilities (OpenAI's `logprobs`), so
        P(yes) is the mass of the yes spellings over yes and no among them; a server that refuses
        log-probabilities (or lists neither word) gets the one-word answer read as 1.0 or 0.0.
        """
        asked = [_checked(i, q) for i, q in enumerate(questions)]
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        answers: list[YesNo] = []
        texts: list[CaptionResult] = []
        if not asked and not prompts:
            return Look(texts=(), answers=(), timings={"vision_passes": 0.0, "total_ms": 0.0})
        url = self.image_url(image)
        timings["encode_ms"] = (time.perf_counter() - t0) * 1000.0
        for q in asked:
            if self._stopped(deadline, cancel):
                break
            t = time.perf_counter()
            answers.append(YesNo(question=q, p_yes=self._yes_no(url, q, deadline)))
            timings["questions_ms"] = timings.get("questions_ms", 0.0) + (time.perf_counter() - t) * 1000.0
        for prompt in prompts if len(answers) == len(asked) else ():
            if self._stopped(deadline, cancel):
                break
            t = time.perf_counter()
            texts.append(self._caption(url, prompt, max_new_tokens, deadline, cancel, None, t, 0.0))
            if texts[-1].finish_reason in ("cancelled", "deadline"):
                break
        # Each request carries the image: the server encodes it once per request unless it caches it.
        timings["vision_passes"] = timings["requests"] = float(len(answers) + len(texts))
        timings["total_ms"] = (time.perf_counter() - t0) * 1000.0
        return Look(texts=tuple(texts), answers=tuple(answers), timings=timings)

    def _stopped(self, deadline: float | None, cancel: threading.Event | None) -> bool:
        return (cancel is not None and cancel.is_set()) or self._expired(deadline)

    def _yes_no(self, url: str, question: str, deadline: float | None) -> float:
        body = self._body(url, question_prompt(question), 1, False)
        if self._logprobs:
            body |= {"logprobs": True, "top_logprobs": TOP_LOGPROBS}
        try:
            answer, _ = self._post(body, False, deadline, None, None, raw=True)
        except RemoteError as exc:
            if not self._logprobs or "logprob" not in str(exc).lower():
                raise
            self._logprobs = False  # this server refuses them: ask for the word alone from now on
            self._log.info("remote_no_logprobs", hint="yes/no answers are read from the answer's word")
            return self._yes_no(url, question, deadline)
        return yes_no_from_answer(self.base, answer)

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
        *,
        raw: bool = False,
    ) -> Any:
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
                if raw:
                    return _json_answer(url, resp.read())
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


def _checked(i: int, question: str) -> str:
    try:
        return validate_question(question)
    except BadQuestion as exc:
        raise BadQuestion(f"question {i + 1}: {exc}") from None


def _json_answer(url: str, raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise RemoteError(f"{url}: not a chat-completions answer: {raw[:200]!r}") from None
    if not isinstance(body, dict):
        raise RemoteError(f"{url}: not a chat-completions answer: {raw[:200]!r}")
    return body


def yes_no_from_answer(url: str, body: dict[str, Any]) -> float:
    """P(yes) from a one-token chat-completions answer: its top log-probabilities, else its word."""
    try:
        choice = body["choices"][0]
        text = str(choice["message"]["content"] or "")
    except (KeyError, IndexError, TypeError):
        raise RemoteError(f"{url}: not a chat-completions answer: {str(body)[:200]}") from None
    mass = {"yes": 0.0, "no": 0.0}
    for entry in _first_top_logprobs(choice):
        word = str(entry.get("token", "")).strip().strip(".,!").lower()
        if word in mass and isinstance(entry.get("logprob"), (int, float)):
            mass[word] += math.exp(float(entry["logprob"]))
    if mass["yes"] + mass["no"] > 0:
        return mass["yes"] / (mass["yes"] + mass["no"])
    words = text.strip().split()
    word = words[0].strip(".,!").lower() if words else ""
    if word in ("yes", "no"):
        return 1.0 if word == "yes" else 0.0
    raise RemoteError(f"{url}: the answer to a yes/no question was neither: {text[:80]!r}")


def _first_top_logprobs(choice: dict[str, Any]) -> list[dict[str, Any]]:
    """`choices[0].logprobs.content[0].top_logprobs` (OpenAI's shape), or [] when absent."""
    try:
        top = choice["logprobs"]["content"][0]["top_logprobs"]
    except (KeyError, IndexError, TypeError):
        return []
    return [e for e in top if isinstance(e, dict)] if isinstance(top, list) else []


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
