"""OpenAI's chat-completions dialect <-> edged's `ChatRequest` and answers: pure functions.

What edged does with a request: the question is the text of the last `user` message; the images are
that message's `image_url` parts (or, if it has none, those of the latest earlier user message that
has some), several of them tiled into one picture. System messages and earlier turns are not shown to
the model (GLM-Edge-V takes one question about one picture). edged decodes greedily: `temperature`
0 is exactly what it does, and any other temperature, `top_p`, `seed` or penalty is accepted and
answered greedily too (`system_fingerprint` says so). What it cannot do is refused with a 400 naming
it: several choices (`n`), tools, structured output (`response_format`), log probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edged import __version__
from edged.api.chat import (
    ApiError,
    ChatRequest,
    ImageSource,
    Limits,
    bad,
    check_images,
    image_from_url,
    lst,
    obj,
    opt_bool,
    opt_int,
    opt_number,
    opt_text,
    prompt_text,
    text,
    tokens,
)

FINGERPRINT = f"edged-{__version__}-greedy"  # every answer is greedy, whatever temperature was asked
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
IGNORED_NUMBERS = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed")


def parse_request(data: Any, limits: Limits) -> ChatRequest:
    """A `POST /v1/chat/completions` body -> `ChatRequest`; raises `ApiError` (400) naming the problem."""
    body = obj(data, "the request body")
    _refuse_what_edged_cannot_do(body)
    for key in IGNORED_NUMBERS:
        opt_number(body, key)  # accepted (greedy anyway), but a wrong type is still the caller's bug
    messages = lst(body.get("messages"), "messages")
    if not messages:
        raise bad("messages is empty; send at least one user message", "messages")
    turns = [_message(m, f"messages[{i}]", limits) for i, m in enumerate(messages)]
    users = [(where, parts, images) for where, role, parts, images in turns if role == "user"]
    if not users:
        raise bad("messages has no user message: edged answers the last user message", "messages")
    where, parts, images = users[-1]
    if not images:
        images = next((imgs for _w, _p, imgs in reversed(users) if imgs), [])
    stream = opt_bool(body, "stream", False)
    options = obj(body["stream_options"], "stream_options") if body.get("stream_options") is not None else {}
    requested = opt_int(body, "max_completion_tokens")
    key = "max_completion_tokens"
    if requested is None:
        requested, key = opt_int(body, "max_tokens"), "max_tokens"
    return ChatRequest(prompt_text(parts, where), check_images(images, limits), tokens(requested, limits, key),
                       stream, opt_text(body, "model"), opt_bool(options, "include_usage", False))


def _refuse_what_edged_cannot_do(body: Mapping[str, Any]) -> None:
    n = opt_int(body, "n")
    if n is not None and n != 1:
        raise bad(f"n must be 1: edged writes one answer per request (got {n})", "n")
    if body.get("tools"):
        raise bad("edged does not call tools; send the request without tools", "tools")
    fmt = body.get("response_format")
    if fmt is not None:
        kind = obj(fmt, "response_format").get("type")
        if kind not in (None, "text"):
            raise bad(f"response_format {kind!r} is not supported: edged writes plain text", "response_format")
    if opt_bool(body, "logprobs", False):
        raise bad("logprobs are not supported", "logprobs")


def _message(value: Any, where: str, limits: Limits) -> tuple[str, str, list[str], list[ImageSource]]:
    """(where, role, text parts, images) of one message."""
    message = obj(value, where)
    role = text(message.get("role"), f"{where}.role")
    if role not in ROLES:
        raise bad(f"{where}.role must be one of {', '.join(ROLES)} (got {role[:40]!r})", f"{where}.role")
    content = message.get("content")
    if content is None or isinstance(content, str):
        return where, role, [content or ""], []
    parts: list[str] = []
    images: list[ImageSource] = []
    for i, part in enumerate(lst(content, f"{where}.content")):
        at = f"{where}.content[{i}]"
        item = obj(part, at)
        kind = text(item.get("type"), f"{at}.type")
        if kind == "text":
            parts.append(text(item.get("text"), f"{at}.text"))
        elif kind == "image_url":
            ref = item.get("image_url")
            url = ref if isinstance(ref, str) else text(obj(ref, f"{at}.image_url").get("url"), f"{at}.image_url.url")
            images.append(image_from_url(url, at, limits))
        else:
            raise bad(f"{at}.type {kind[:40]!r} is not supported (text and image_url are)", f"{at}.type")
    return where, role, parts, images


# -- answers ----------------------------------------------------------------------------------------
def completion(answer_id: str, created: int, model: str, content: str, finish_reason: str,
               usage: Mapping[str, int]) -> dict[str, Any]:
    """The `chat.completion` object of a finished answer."""
    return {"id": answer_id, "object": "chat.completion", "created": created, "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "logprobs": None, "finish_reason": finish_reason}],
            "usage": dict(usage)}


def chunk(answer_id: str, created: int, model: str, delta: Mapping[str, str], finish_reason: str | None = None,
          usage: Mapping[str, int] | None = None) -> dict[str, Any]:
    """One `chat.completion.chunk` of a streamed answer (the usage chunk has no choices)."""
    choices = [] if usage is not None else [{"index": 0, "delta": dict(delta), "logprobs": None,
                                             "finish_reason": finish_reason}]
    out: dict[str, Any] = {"id": answer_id, "object": "chat.completion.chunk", "created": created, "model": model,
                           "system_fingerprint": FINGERPRINT, "choices": choices}
    if usage is not None:
        out["usage"] = dict(usage)
    return out


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def models(names: Sequence[str], created: int) -> dict[str, Any]:
    """`GET /v1/models`: the model edged runs (none while none is loaded)."""
    return {"object": "list", "data": [model(name, created) for name in names]}


def model(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "edged"}


_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error"}


def error(err: ApiError) -> dict[str, Any]:
    """OpenAI's error object: `{"error": {"message", "type", "param", "code"}}`."""
    return {"error": {"message": err.message, "type": _TYPES.get(err.status, "server_error"), "param": err.param,
                      "code": err.code}}
