"""What an API request is for edged, whichever dialect it came in: a question, the images it is about,
and how long the answer may be; plus the limits every request is held to and the errors they raise."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edged.config.schema import ApiConfig
from edged.control.commands import json_depth

MAX_DEPTH = 32  # JSON nesting; the deepest real request (a response_format schema) is far below
MAX_PROMPT_CHARS = 4000  # the question; GLM-Edge-V's prompt is one short user turn
MAX_PIXELS = 40_000_000  # per image: a 40 MP photo is plenty; a "bomb" PNG of 50,000^2 pixels is refused
NO_IMAGE_ANSWER = ("edged answers questions about images, and this request has none: add an image "
                   "(an image_url part, or Ollama's images) to the message.")


class ApiError(Exception):
    """A request edged will not (or cannot now) answer: an HTTP status and a message naming the problem."""

    def __init__(self, status: int, message: str, code: str = "invalid_request", *, param: str | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after = retry_after


def bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request", param=param)


@dataclass(frozen=True)
class Limits:
    """What one request may carry and ask for (from the api config)."""

    max_images: int = 4
    max_image_bytes: int = 8 * 1024 * 1024
    max_tokens: int = 128
    allow_urls: bool = False
    max_pixels: int = MAX_PIXELS

    @classmethod
    def of(cls, config: ApiConfig) -> Limits:
        return cls(config.max_images, int(config.max_image_mb * 1024 * 1024), config.max_tokens,
                   config.allow_image_urls)


@dataclass(frozen=True)
class ImageSource:
    """One image as the request gave it, not yet decoded: base64 text, or an http(s) URL."""

    where: str  # its place in the request, for error messages: "messages[0].content[1]"
    base64: str = ""
    url: str = ""


@dataclass(frozen=True)
class ChatRequest:
    """One request in edged's terms. No images: nothing for the model to look at (see NO_IMAGE_ANSWER)."""

    prompt: str
    images: tuple[ImageSource, ...]
    max_tokens: int
    stream: bool
    model: str = ""
    include_usage: bool = False  # OpenAI's stream_options.include_usage


def parse_json(body: bytes) -> Any:
    """The request body as JSON; raises a 400 naming what is wrong (never recurses deeply)."""
    if not body.strip():
        raise bad("the request body is empty; send a JSON object")
    depth = json_depth(body)
    if depth > MAX_DEPTH:
        raise bad(f"the JSON nests {depth} levels deep; the limit is {MAX_DEPTH}")
    try:
        return json.loads(body.decode("utf-8"))  # JSON is UTF-8 (RFC 8259); json.loads would guess UTF-16/32
    except UnicodeDecodeError:
        raise bad("the request body is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise bad(f"the request body is not valid JSON ({str(exc)[:120]})") from None


# -- reading JSON values with errors that say where --------------------------------------------------
def obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise bad(f"{where} must be a JSON object (got {kind(value)})", where)
    return value


def lst(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise bad(f"{where} must be a list (got {kind(value)})", where)
    return value


def text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise bad(f"{where} must be text (got {kind(value)})", where)
    return value


def opt_text(body: Mapping[str, Any], key: str, default: str = "") -> str:
    return default if body.get(key) is None else text(body[key], key)


def opt_bool(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad(f"{key} must be true or false (got {kind(value)})", key)
    return value


def opt_int(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise bad(f"{key} must be a whole number (got {kind(value)})", key)
    return int(value)


def opt_number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad(f"{key} must be a number (got {kind(value)})", key)
    return float(value)


def kind(value: Any) -> str:
    """How a JSON value is named in an error message (never the value itself: it may be an image)."""
    names = {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"the number {value}" if len(repr(value)) <= 24 else "a number"
    return names.get(type(value), type(value).__name__)


def tokens(requested: int | None, limits: Limits, key: str) -> int:
    """The answer's length: what was asked for, at most the configured limit."""
    if requested is None:
        return limits.max_tokens
    if requested < 1:
        raise bad(f"{key} must be at least 1 (got {requested})", key)
    return min(requested, limits.max_tokens)


def prompt_text(parts: list[str], where: str) -> str:
    prompt = "\n".join(p.strip() for p in parts if p.strip())
    if len(prompt) > MAX_PROMPT_CHARS:
        raise bad(f"{where} has {len(prompt)} characters of text; the limit is {MAX_PROMPT_CHARS}", where)
    return prompt


def check_images(images: list[ImageSource], limits: Limits) -> tuple[ImageSource, ...]:
    if len(images) > limits.max_images:
        raise bad(f"the request has {len(images)} images; the limit is {limits.max_images} (api.max_images)")
    return tuple(images)


def image_from_url(url: str, where: str, limits: Limits) -> ImageSource:
    """An OpenAI `image_url`: a base64 data URL of an image, or an http(s) URL when they are allowed."""
    head = url[:64].lower()
    if head.startswith("data:"):
        meta, sep, payload = url[5:].partition(",")
        if not sep:
            raise bad(f"{where}: a data URL needs a comma before its data (data:image/jpeg;base64,...)", where)
        mime, *params = meta.split(";")
        if not mime.lower().startswith("image/"):
            raise bad(f"{where}: the data URL holds {mime or 'text/plain'!r}, not an image", where)
        if "base64" not in (p.strip().lower() for p in params):
            raise bad(f"{where}: the data URL must be base64 (data:{mime};base64,...)", where)
        return ImageSource(where, base64=payload)
    if head.startswith(("http://", "https://")):
        if not limits.allow_urls:
            raise bad(f"{where}: image URLs are not fetched (api.allow_image_urls is off); send the image "
                      "as a data URL (data:image/jpeg;base64,...)", where)
        return ImageSource(where, url=url)
    scheme = head.split(":", 1)[0] if ":" in head else ""
    raise bad(f"{where}: an image URL must be a data: URL or http(s) (got {scheme + ':' if scheme else 'no scheme'})",
              where)
