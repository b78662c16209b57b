"""The HTTP shell of the API: aiohttp on its own thread and event loop, owned by the daemon.

Why aiohttp: it is the HTTP stack Home Assistant itself runs on, well kept, and its asyncio server
serves many slow or idle connections from one thread, so a burst of clients costs coroutines, not
threads, in a daemon whose cores belong to the model. It parses HTTP, caps the body size
(`client_max_size`) and cancels a handler whose client went away, which is when a queued request is
withdrawn from the scheduler so the model's time goes to someone still waiting.

A request's way: the bearer token (when one is configured), 503 while no model is loaded or the
pipeline restarts, 429 when `max_concurrent` requests are already in, then the body (413 over
`max_body_mb`), its JSON and its images (400 / 413; parsed and decoded on a small thread pool, off the
event loop), then an image trigger for the scheduler at `request` priority with the api's deadline.
Tokens stream back through the event loop as the model writes them. Every refusal is a JSON error in
the dialect of the path (OpenAI's under /v1, Ollama's elsewhere), with Retry-After on 429 and 503.
Nothing of a request (image, text, token) is stored or logged: log lines carry the path, the status
and the time taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from aiohttp import ClientSession, ClientTimeout, web

from edged.api import ollama_wire, openai_wire
from edged.api.answers import Dialect, Event, OllamaAnswers, OpenAiAnswers, canned
from edged.api.chat import NO_IMAGE_ANSWER, ApiError, ChatRequest, ImageSource, Limits, bad, parse_json
from edged.api.images import decode_base64, decode_image, tile, too_large
from edged.config.schema import ApiConfig
from edged.inference.protocol import CaptionResult
from edged.logs import get_logger
from edged.metrics import Percentiles
from edged.scheduling.scheduler import Scheduler
from edged.scheduling.triggers import HandedImage, StreamSink, Trigger, TriggerError

FAMILY = "glm-edge-v"
GRACE_S = 5.0  # past a request's deadline the scheduler has answered it; this long more and we stop waiting
FETCH_TIMEOUT_S = 10.0  # an image URL (only with allow_image_urls)
RESTART_RETRY_S = 5  # Retry-After while the pipeline restarts (a SIGHUP reload) or edged stops
NO_MODEL_RETRY_S = 60
SMALL_BODY_MB = 1 / 16  # /api/show: a model name
Parse = Callable[[Any, Limits], ChatRequest | None]


class Pipeline(Protocol):
    """What the API needs of the running pipeline."""

    @property
    def scheduler(self) -> Scheduler: ...


@dataclass
class Counters:
    requests: int = 0
    answered: int = 0
    streamed: int = 0
    busy_429: int = 0
    unavailable_503: int = 0
    client_errors: int = 0  # other 4xx
    server_errors: int = 0  # 5xx
    no_image: int = 0


@dataclass(eq=False)
class _Call:
    """One request's trip through the scheduler: its tokens and outcome come back on the event loop."""

    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    trigger: Trigger | None = None
    finished: bool = False  # its outcome reached the handler (nothing left to withdraw)

    def put(self, item: tuple[str, Any]) -> None:
        """From the model's or the scheduler's thread."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server stopped, nobody waits any more
            self.loop.call_soon_threadsafe(self.events.put_nowait, item)

    def token(self, piece: str) -> None:
        self.put(("token", piece))

    def done(self, _trigger: Trigger, result: CaptionResult | None, error: TriggerError | None) -> None:
        self.put(("done", (result, error)))


class ApiServer:
    """The endpoint's thread, event loop and HTTP server (see the module doc)."""

    def __init__(self, config: ApiConfig, token: str | None, pipeline: Callable[[], Pipeline | None]) -> None:
        self.config = config
        self._token = token.encode() if token else None
        self._pipeline = pipeline
        self._limits = Limits.of(config)
        self.log = get_logger(component="api")
        self.counters = Counters()
        self.latency_ms = Percentiles()
        self._counters_lock = threading.Lock()
        self._thread = threading.Thread(target=self._main, name="api", daemon=True)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="api-decode")
        self._calls: set[_Call] = set()
        self._in_flight = 0  # only touched on the event loop
        self._session: ClientSession | None = None
        self._created = int(time.time())
        self.state = "starting"
        self.reason = ""

    # -- owner API (the daemon's thread) ---------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> bool:
        """Start listening; False (with `reason`, logged) when the address cannot be bound."""
        self._thread.start()
        if not self._ready.wait(timeout):
            self.state, self.reason = "failed", f"did not start listening within {timeout:g}s"
        if self.state != "listening":
            self.log.error("api_start_failed", listen=self.config.listen, reason=self.reason)
            return False
        self.log.info("api_listening", listen=self.config.listen, auth=self._auth)
        return True

    def stop(self, timeout: float) -> bool:
        """Answer whoever waits with 503, stop listening and end the thread within `timeout` s."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # it closed meanwhile: the thread is ending anyway
                loop.call_soon_threadsafe(stopping.set)
        self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._thread.is_alive():
            self.log.warning("api_stop_timeout", timeout_s=timeout)
            return False
        return True

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stats(self) -> dict[str, Any]:
        with self._counters_lock:
            counters = dict(vars(self.counters))
        return {"state": self.state, "listen": self.config.listen, "reason": self.reason,
                "auth": self._auth, "in_flight": self._in_flight, **counters,
                "latency_ms": self.latency_ms.summary()}

    @property
    def _auth(self) -> str:
        return "bearer" if self._token is not None else "none (loopback)"

    # -- the thread --------------------------------------------------------------------------------------
    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except Exception as exc:  # the server itself failed: say so; the daemon's watchdog sees the thread end
            self.state, self.reason = "failed", f"{type(exc).__name__}: {exc}"
            self.log.exception("api_crashed", error=str(exc))
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=int(self.config.max_body_mb * 1024 * 1024),
                              middlewares=[self._guard])
        self._routes(app)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, handler_cancellation=True,
                               shutdown_timeout=0.5)
        await runner.setup()
        host, port = self.config.address
        try:
            await web.TCPSite(runner, host, port, backlog=64).start()
        except OSError as exc:
            self.state, self.reason = "failed", _bind_failure(self.config.listen, exc)
            await runner.cleanup()
            return
        self.state = "listening"
        self._ready.set()
        await self._stopping.wait()
        self.state = "stopping"
        for call in list(self._calls):  # whoever waits gets 503 now, not when the pipeline has stopped
            call.events.put_nowait(("done", (None, TriggerError("edged is stopping", "unavailable"))))
        await runner.cleanup()
        if self._session is not None:
            await self._session.close()
        self.state = "stopped"

    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._root)
        app.router.add_get("/v1/models", self._openai_models)
        app.router.add_get("/v1/models/{model:.+}", self._openai_model)
        app.router.add_post("/v1/chat/completions", self._openai_chat)
        app.router.add_get("/api/tags", self._ollama_tags)
        app.router.add_post("/api/show", self._ollama_show)
        app.router.add_post("/api/chat", self._ollama_chat)
        app.router.add_post("/api/generate", self._ollama_generate)

    # -- every request: token, errors, counters, one log line ------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        started = time.monotonic()
        openai = request.path.startswith("/v1/")
        try:
            if self._token is not None and not self._authorized(request):
                raise ApiError(401, "a valid bearer token is required (Authorization: Bearer <token>)",
                               "invalid_api_key")
            response = await handler(request)
        except ApiError as err:
            response = _error_response(err, openai)
        except web.HTTPException as exc:  # the router's 404 / 405, aiohttp's own 413
            response = _error_response(_http_error(exc, self.config), openai)
        except asyncio.CancelledError:
            self._count(499, started)
            raise
        except Exception as exc:  # a bug, not the caller's doing: a 500 with no detail, the detail in the log
            self.log.exception("api_request_failed", path=request.path, error=str(exc)[:200])
            response = _error_response(ApiError(500, "internal error; see edged's log", "internal_error"), openai)
        self._count(response.status, started)
        # Answers at info; refusals at debug (a flood of them must not flood the journal: stats count them).
        log = self.log.info if response.status < 400 else self.log.debug
        log("api_request", method=request.method, path=request.path, status=response.status,
            ms=round((time.monotonic() - started) * 1000, 1), client=request.remote)
        return response

    def _authorized(self, request: web.Request) -> bool:
        assert self._token is not None
        scheme, _sep, given = request.headers.get("Authorization", "").strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token)

    def _count(self, status: int, started: float) -> None:
        with self._counters_lock:
            c = self.counters
            c.requests += 1
            if status == 429:
                c.busy_429 += 1
            elif status == 503:
                c.unavailable_503 += 1
            elif 400 <= status < 500:
                c.client_errors += 1
            elif status >= 500:
                c.server_errors += 1
        if status < 300:
            self.latency_ms.add((time.monotonic() - started) * 1000)

    # -- model lists ---------------------------------------------------------------------------------------
    def _model_names(self) -> list[str]:
        pipeline = self._pipeline()
        name = None if pipeline is None else pipeline.scheduler.model_name
        return [] if name is None else [name]

    async def _root(self, _request: web.Request) -> web.StreamResponse:
        return web.Response(text="edged is running")

    async def _openai_models(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response(openai_wire.models(self._model_names(), self._created))

    async def _openai_model(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["model"]
        if name not in self._model_names():
            raise ApiError(404, f"no model {name[:80]!r}; GET /v1/models lists the one edged runs", "model_not_found")
        return web.json_response(openai_wire.model(name, self._created))

    async def _ollama_tags(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response(ollama_wire.tags(self._model_names(), FAMILY, self._modified()))

    async def _ollama_show(self, request: web.Request) -> web.StreamResponse:
        body = await self._read(request, SMALL_BODY_MB)  # a model name: outside the request slots, so small
        data = await self._off_loop(parse_json, body)
        name = data.get("model") or data.get("name") if isinstance(data, dict) else None
        if not isinstance(name, str) or name not in self._model_names():
            raise ApiError(404, f"model {str(name)[:80]!r} not found; GET /api/tags lists the one edged runs",
                           "model_not_found")
        return web.json_response(ollama_wire.show(name, FAMILY, self._modified()))

    def _modified(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._created))

    # -- chat --------------------------------------------------------------------------------------------
    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, openai_wire.parse_request, OpenAiAnswers())

    async def _ollama_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, ollama_wire.parse_chat, OllamaAnswers(ollama_wire.chat_line))

    async def _ollama_generate(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, ollama_wire.parse_generate, OllamaAnswers(ollama_wire.generate_line))

    async def _chat(self, request: web.Request, parse: Parse, dialect: Dialect) -> web.StreamResponse:
        scheduler = self._scheduler()
        model = scheduler.model_name or ""
        if self._in_flight >= self.config.max_concurrent:
            raise ApiError(429, f"{self._in_flight} requests are already queued or running (api.max_concurrent); "
                                "try again shortly", "busy", retry_after=_retry(scheduler))
        self._in_flight += 1
        try:
            body = await self._read(request)
            chat = await self._off_loop(_parse_body, body, parse, self._limits)
            if chat is None:  # Ollama's "load the model" call: it is loaded
                return web.json_response(dialect.loaded(model))
            if not chat.images:
                with self._counters_lock:
                    self.counters.no_image += 1
                return await dialect.respond(request, model, canned(NO_IMAGE_ANSWER), chat)
            pixels = await self._pixels(chat.images)
            return await self._ask(request, scheduler, chat, pixels, model, dialect)
        finally:
            self._in_flight -= 1

    def _scheduler(self) -> Scheduler:
        pipeline = self._pipeline()
        if pipeline is None or self.state == "stopping":
            raise ApiError(503, "edged is restarting; try again shortly", "unavailable", retry_after=RESTART_RETRY_S)
        if pipeline.scheduler.model_name is None:
            raise ApiError(503, "no caption model is loaded (get one with: edged models pull glm-edge-v-2b)",
                           "no_model", retry_after=NO_MODEL_RETRY_S)
        return pipeline.scheduler

    async def _read(self, request: web.Request, limit_mb: float | None = None) -> bytes:
        limit = self.config.max_body_mb if limit_mb is None else limit_mb
        if request.content_length is not None and request.content_length > limit * 1024 * 1024:
            raise too_large(f"the request body is {request.content_length / 2**20:.1f} MB; the limit is "
                            f"{limit:g} MB (api.max_body_mb)")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise too_large(f"the request body is over {limit:g} MB (api.max_body_mb)") from None
        if len(body) > limit * 1024 * 1024:  # chunked, no Content-Length: aiohttp checked the larger limit
            raise too_large(f"the request body is over {limit:g} MB")
        return body

    async def _off_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run CPU work (JSON, base64, image decoding) on the pool, not on the event loop. A caller that goes
        away meanwhile keeps its request slot until the work is done, so no more than max_concurrent
        bodies are ever held or decoded, however often clients connect and hang up."""
        work = asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await work
            raise

    async def _pixels(self, sources: tuple[ImageSource, ...]) -> np.ndarray:
        raws = [await self._fetch(s) if s.url else None for s in sources]
        return await self._off_loop(_decode_all, sources, raws, self._limits)  # type: ignore[no-any-return]

    async def _fetch(self, source: ImageSource) -> bytes:
        """An http(s) image (allow_image_urls), at most max_image_mb, within FETCH_TIMEOUT_S."""
        if self._session is None:
            self._session = ClientSession(timeout=ClientTimeout(total=FETCH_TIMEOUT_S))
        limit = self._limits.max_image_bytes
        try:
            async with self._session.get(source.url) as response:
                if response.status != 200:
                    raise bad(f"{source.where}: fetching the image URL gave HTTP {response.status}")
                data = await response.content.read(limit + 1)
                while len(data) <= limit and not response.content.at_eof():
                    data += await response.content.read(limit + 1 - len(data))
        except ApiError:
            raise
        except Exception as exc:  # DNS, refused, timeout, TLS...: the URL is the caller's
            raise bad(f"{source.where}: the image URL could not be fetched ({type(exc).__name__})") from None
        if len(data) > limit:
            raise too_large(f"{source.where}: the image is over {limit / 2**20:g} MB (api.max_image_mb)")
        return data

    async def _ask(self, request: web.Request, scheduler: Scheduler, chat: ChatRequest, pixels: np.ndarray,
                   model: str, dialect: Dialect) -> web.StreamResponse:
        """Hand the image to the scheduler and answer with what comes back (streamed or whole)."""
        call = _Call(asyncio.get_running_loop())
        sink = StreamSink(call.token) if chat.stream else None
        trigger = scheduler.make_image_trigger(HandedImage(pixels, chat.prompt, chat.max_tokens, sink),
                                               self.config.deadline, call.done)
        call.trigger = trigger
        self._calls.add(call)
        started = time.monotonic()
        try:
            scheduler.trigger(trigger)
            response = await dialect.respond(request, model, self._events(call, trigger, scheduler), chat)
        finally:
            self._calls.discard(call)
            if not call.finished:  # the client went away (cancelled, or a write failed): nobody waits
                scheduler.withdraw(trigger)
        with self._counters_lock:
            self.counters.answered += 1
            self.counters.streamed += int(chat.stream)
        self.log.debug("api_answered", ms=round((time.monotonic() - started) * 1000, 1), stream=chat.stream)
        return response

    async def _events(self, call: _Call, trigger: Trigger, scheduler: Scheduler) -> AsyncIterator[Event]:
        """Pieces of text, then the result; a refusal is raised as the `ApiError` it maps to."""
        while True:
            left = trigger.deadline + GRACE_S - time.monotonic()
            try:
                kind, value = await asyncio.wait_for(call.events.get(), timeout=max(left, 0.1))
            except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                call.finished = True
                scheduler.withdraw(trigger)
                raise ApiError(503, "no answer within the deadline (api.deadline); try again", "deadline",
                               retry_after=_retry(scheduler)) from None
            if kind == "token":
                yield value
                continue
            call.finished = True
            result, error = value
            if error is not None:
                raise _refusal(error, scheduler)
            yield result
            return


def _parse_body(body: bytes, parse: Parse, limits: Limits) -> ChatRequest | None:
    return parse(parse_json(body), limits)


def _decode_all(sources: tuple[ImageSource, ...], raws: list[bytes | None], limits: Limits) -> np.ndarray:
    images = []
    for source, raw in zip(sources, raws, strict=True):
        data = raw if raw is not None else decode_base64(source.base64, source.where, limits)
        images.append(decode_image(data, source.where, limits))
    return tile(images)


def _retry(scheduler: Scheduler) -> int:
    """Seconds to wait before trying again: about one caption."""
    return max(1, min(NO_MODEL_RETRY_S, math.ceil(scheduler.expected_caption_s or 1.0)))


def _refusal(error: TriggerError, scheduler: Scheduler) -> ApiError:
    """The HTTP answer to a scheduler's refusal (see `ErrorKind`)."""
    match error.kind:
        case "busy":
            return ApiError(429, str(error), "busy", retry_after=_retry(scheduler))
        case "unavailable":
            return ApiError(503, str(error), "unavailable", retry_after=RESTART_RETRY_S)
        case "stale":
            return ApiError(503, f"no answer within the deadline (api.deadline): {error}", "deadline",
                            retry_after=_retry(scheduler))
        case "failed":
            return ApiError(500, str(error), "model_failed")
        case _:
            return ApiError(400, str(error), "refused")


def _error_response(err: ApiError, openai: bool) -> web.Response:
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else {}
    if err.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="edged"'
    body = openai_wire.error(err) if openai else ollama_wire.error(err)
    return web.json_response(body, status=err.status, headers=headers)


def _http_error(exc: web.HTTPException, config: ApiConfig) -> ApiError:
    if exc.status == 413:
        return too_large(f"the request body is over {config.max_body_mb:g} MB (api.max_body_mb)")
    if exc.status == 404:
        return ApiError(404, "no such endpoint (edged serves /v1/chat/completions, /v1/models, /api/chat, "
                             "/api/generate, /api/tags, /api/show)", "not_found")
    if exc.status == 405:
        return ApiError(405, f"this endpoint does not take {exc.reason or 'that method'}", "method_not_allowed")
    return ApiError(exc.status, exc.reason or "bad request", "invalid_request")


def _bind_failure(listen: str, exc: OSError) -> str:
    hint = ""
    if exc.errno in (1, 13):  # EPERM, EACCES
        hint = ("; under systemd the unit allows binding only tcp:11435 (SocketBindAllow=): change both "
                "together")
    return f"cannot listen on {listen}: {exc.strerror or exc}{hint}"
