"""Ollama's dialect (`/api/chat`, `/api/generate`, `/api/tags`, `/api/show`) <-> edged: pure functions.

As with OpenAI's dialect (see `openai_wire`): the question is the last user message's text (or
`prompt`), the images are its base64 `images` (or the latest earlier user message's), decoding is
greedy whatever `options.temperature` says, `options.num_predict` caps the answer, and tools and
structured output (`format`) are refused with a 400 naming them. Streaming is on unless `stream`
is false, as Ollama does it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from edged.api.chat import (
    ApiError,
    ChatRequest,
    ImageSource,
    Limits,
    bad,
    check_images,
    lst,
    obj,
    opt_bool,
    opt_int,
    opt_text,
    prompt_text,
    text,
    tokens,
)

ROLES = ("system", "user", "assistant", "tool")


def parse_chat(data: Any, limits: Limits) -> ChatRequest | None:
    """A `POST /api/chat` body -> `ChatRequest`; None for no messages (Ollama's "load the model" call)."""
    body = obj(data, "the request body")
    _refuse_what_edged_cannot_do(body)
    messages = lst(body.get("messages") or [], "messages")
    if not messages:
        return None
    turns = [_message(m, f"messages[{i}]") for i, m in enumerate(messages)]
    users = [(where, content, images) for where, role, content, images in turns if role == "user"]
    if not users:
        raise bad("messages has no user message: edged answers the last user message", "messages")
    where, content, images = users[-1]
    if not images:
        images = next((imgs for _w, _c, imgs in reversed(users) if imgs), [])
    return ChatRequest(prompt_text([content], where), check_images(images, limits), _num_predict(body, limits),
                       opt_bool(body, "stream", True), opt_text(body, "model"))


def parse_generate(data: Any, limits: Limits) -> ChatRequest | None:
    """A `POST /api/generate` body -> `ChatRequest`; None for no prompt and no image (a "load" call)."""
    body = obj(data, "the request body")
    _refuse_what_edged_cannot_do(body)
    prompt = opt_text(body, "prompt")
    images = _images(body.get("images"), "images")
    if not prompt and not images:
        return None
    return ChatRequest(prompt_text([prompt], "prompt"), check_images(images, limits), _num_predict(body, limits),
                       opt_bool(body, "stream", True), opt_text(body, "model"))


def _refuse_what_edged_cannot_do(body: Mapping[str, Any]) -> None:
    if body.get("tools"):
        raise bad("edged does not call tools; send the request without tools")
    if body.get("format") not in (None, ""):
        raise bad("structured output (format) is not supported: edged writes plain text")


def _num_predict(body: Mapping[str, Any], limits: Limits) -> int:
    options = obj(body["options"], "options") if body.get("options") is not None else {}
    requested = opt_int(options, "num_predict")
    if requested is not None and requested < 0:  # Ollama's -1 (no limit) and -2 (fill the context)
        requested = None
    return tokens(requested, limits, "options.num_predict")


def _message(value: Any, where: str) -> tuple[str, str, str, list[ImageSource]]:
    message = obj(value, where)
    role = text(message.get("role"), f"{where}.role")
    if role not in ROLES:
        raise bad(f"{where}.role must be one of {', '.join(ROLES)} (got {role[:40]!r})")
    content = "" if message.get("content") is None else text(message["content"], f"{where}.content")
    return where, role, content, _images(message.get("images"), f"{where}.images")


def _images(value: Any, where: str) -> list[ImageSource]:
    """Ollama's images: base64 text each (a data URL's `data:image/...;base64,` prefix is tolerated)."""
    if value is None:
        return []
    out = []
    for i, item in enumerate(lst(value, where)):
        data = text(item, f"{where}[{i}]")
        if data[:5].lower() == "data:":
            meta, _sep, data = data.partition(",")
            if not meta.lower().startswith("data:image/"):
                raise bad(f"{where}[{i}]: the data URL holds {meta[5:].split(';')[0]!r}, not an image")
        out.append(ImageSource(f"{where}[{i}]", base64=data))
    return out


# -- answers ----------------------------------------------------------------------------------------
def now_iso() -> str:
    """Ollama's `created_at`: RFC 3339 UTC with fractional seconds."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def chat_line(model: str, content: str, done: bool = False, done_reason: str | None = None,
              stats: Mapping[str, int] | None = None) -> dict[str, Any]:
    """One `/api/chat` object: a streamed piece, or the last one (`done`) with the timings."""
    out: dict[str, Any] = {"model": model, "created_at": now_iso(),
                           "message": {"role": "assistant", "content": content}, "done": done}
    if done:
        out["done_reason"] = done_reason or "stop"
        out.update(stats or {})
    return out


def generate_line(model: str, content: str, done: bool = False, done_reason: str | None = None,
                  stats: Mapping[str, int] | None = None) -> dict[str, Any]:
    """One `/api/generate` object."""
    out: dict[str, Any] = {"model": model, "created_at": now_iso(), "response": content, "done": done}
    if done:
        out["done_reason"] = done_reason or "stop"
        out.update(stats or {})
    return out


def timings(total_ms: float, prompt_tokens: int, completion_tokens: int,
            model_ms: Mapping[str, float]) -> dict[str, int]:
    """Ollama's counters (durations in nanoseconds) from a caption's timings."""
    def ns(ms: float) -> int:
        return int(ms * 1e6)

    prefill = model_ms.get("preprocess_ms", 0.0) + model_ms.get("vision_ms", 0.0) + model_ms.get("prefill_ms", 0.0)
    return {"total_duration": ns(total_ms), "load_duration": 0, "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": ns(prefill), "eval_count": completion_tokens,
            "eval_duration": ns(model_ms.get("decode_ms", 0.0))}


def tags(names: Sequence[str], family: str, modified: str) -> dict[str, Any]:
    """`GET /api/tags`: the model edged runs (no models while none is loaded)."""
    return {"models": [{"name": name, "model": name, "modified_at": modified, "size": 0, "digest": "",
                        "details": details(name, family)} for name in names]}


def details(name: str, family: str) -> dict[str, Any]:
    variant = name.rpartition(":")[2] if ":" in name else ""
    return {"parent_model": "", "format": "onnx", "family": family, "families": [family],
            "parameter_size": "", "quantization_level": variant}


def show(name: str, family: str, modified: str) -> dict[str, Any]:
    """`POST /api/show`: what clients read to see that the model takes images."""
    return {"modelfile": "", "parameters": "", "template": "", "license": "", "modified_at": modified,
            "details": details(name, family), "model_info": {"general.architecture": family},
            "capabilities": ["completion", "vision"]}


def error(err: ApiError) -> dict[str, Any]:
    """Ollama's error object: `{"error": "..."}`."""
    return {"error": err.message}
