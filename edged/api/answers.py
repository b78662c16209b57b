"""How an answer goes back over HTTP, in each dialect: whole (one JSON object) or streamed as the model
writes it (OpenAI's server-sent events ending with `data: [DONE]`, Ollama's JSON lines). An answer
arrives as pieces of text and then the result (`Event`); a refusal arrives as the `ApiError` it maps
to: before the first piece it is still an HTTP error status, after it an error event in the stream."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from aiohttp import web

from edged.api import ollama_wire, openai_wire
from edged.api.chat import ApiError, ChatRequest, bad
from edged.inference.protocol import CaptionResult

Event = str | CaptionResult  # a streamed piece of text, or the final result


async def canned(text: str) -> AsyncIterator[Event]:
    """The answer to a request without an image: no model run (see NO_IMAGE_ANSWER)."""
    yield CaptionResult(text, (), "", "stop")


class Dialect(Protocol):
    """How one API family frames an answer: whole, or streamed as it is written."""

    def loaded(self, model: str) -> dict[str, Any]: ...

    async def respond(self, request: web.Request, model: str, events: AsyncIterator[Event],
                      chat: ChatRequest) -> web.StreamResponse: ...


class OpenAiAnswers:
    """Chat completions: one JSON object, or server-sent events ending with `data: [DONE]`."""

    def loaded(self, model: str) -> dict[str, Any]:
        raise bad("messages is empty; send at least one user message", "messages")

    async def respond(self, request: web.Request, model: str, events: AsyncIterator[Event],
                      chat: ChatRequest) -> web.StreamResponse:
        answer_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if not chat.stream:
            result = await _final(events)
            return web.json_response(openai_wire.completion(answer_id, created, model, result.text,
                                                            _finish(result), _usage(result)), headers=GREEDY)
        pieces = Pieces(events)
        first = await pieces.first()  # a refusal before any text is still an HTTP error status
        response = await _open_stream(request, "text/event-stream")

        async def send(data: Mapping[str, Any]) -> None:
            await response.write(b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n")

        try:
            await send(openai_wire.chunk(answer_id, created, model, {"role": "assistant", "content": ""}))
            try:
                async for piece in pieces.rest(first):
                    await send(openai_wire.chunk(answer_id, created, model, {"content": piece}))
                result = pieces.result
                await send(openai_wire.chunk(answer_id, created, model, {}, _finish(result)))
                if chat.include_usage:
                    await send(openai_wire.chunk(answer_id, created, model, {}, usage=_usage(result)))
            except ApiError as err:  # refused after the stream began: an error event, as OpenAI sends them
                await send(openai_wire.error(err))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionError:  # the client went away mid-stream; the caller withdraws the job
            pass
        return response


class OllamaAnswers:
    """/api/chat and /api/generate: one JSON object, or (Ollama's default) JSON lines."""

    def __init__(self, line: Callable[..., dict[str, Any]]) -> None:
        self._line = line

    def loaded(self, model: str) -> dict[str, Any]:
        return self._line(model, "", True, "load")

    async def respond(self, request: web.Request, model: str, events: AsyncIterator[Event],
                      chat: ChatRequest) -> web.StreamResponse:
        started = time.monotonic()
        if not chat.stream:
            result = await _final(events)
            return web.json_response(self._line(model, result.text, True, _finish(result),
                                                _ollama_stats(result, started)), headers=GREEDY)
        pieces = Pieces(events)
        first = await pieces.first()
        response = await _open_stream(request, "application/x-ndjson")

        async def send(data: Mapping[str, Any]) -> None:
            await response.write(json.dumps(data, ensure_ascii=False).encode() + b"\n")

        try:
            try:
                async for piece in pieces.rest(first):
                    await send(self._line(model, piece))
                result = pieces.result
                await send(self._line(model, "", True, _finish(result), _ollama_stats(result, started)))
            except ApiError as err:  # refused after the stream began: an error line, as Ollama sends them
                await send(ollama_wire.error(err))
            await response.write_eof()
        except ConnectionError:  # the client went away mid-stream; the caller withdraws the job
            pass
        return response


GREEDY = {"X-Edged-Decoding": "greedy"}  # whatever temperature was asked for


class Pieces:
    """The text of a streamed answer as the caller should see it: leading blanks dropped, and the whole
    text at the end if the model streamed none (a backend that does not stream)."""

    def __init__(self, events: AsyncIterator[Event]) -> None:
        self._events = events
        self.sent = ""
        self.result = CaptionResult("", (), "", "stop")

    async def first(self) -> Event:
        return await anext(self._events)

    async def rest(self, first: Event) -> AsyncIterator[str]:
        event: Event | None = first
        while event is not None:
            if isinstance(event, CaptionResult):
                self.result = event
                if not self.sent.strip() and event.text:
                    yield event.text
                return
            piece = event if self.sent else event.lstrip()
            if piece:
                self.sent += piece
                yield piece
            event = await anext(self._events, None)


async def _final(events: AsyncIterator[Event]) -> CaptionResult:
    async for event in events:
        if isinstance(event, CaptionResult):
            return event
    raise ApiError(500, "the answer ended without a result", "internal_error")


async def _open_stream(request: web.Request, content_type: str) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": content_type, "Cache-Control": "no-cache", **GREEDY})
    await response.prepare(request)
    return response


def _finish(result: CaptionResult) -> str:
    return "length" if result.finish_reason == "length" else "stop"


def _usage(result: CaptionResult) -> dict[str, int]:
    return openai_wire.usage(int(result.timings.get("prompt_tokens", 0)), len(result.tokens))


def _ollama_stats(result: CaptionResult, started: float) -> dict[str, int]:
    return ollama_wire.timings((time.monotonic() - started) * 1000, int(result.timings.get("prompt_tokens", 0)),
                               len(result.tokens), result.timings)
