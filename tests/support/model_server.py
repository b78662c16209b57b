"""A captioning model server on 127.0.0.1 for daemon tests whose caption must still be running at a
moment the test chooses.

It speaks the chat-completions protocol of a llama.cpp server, Ollama or vLLM (what edged's `remote`
backend calls), streaming one piece of text per server-sent event, like a model emitting tokens. After
the first piece it holds the stream until the test calls `release()`, then sends the rest, one piece
every `piece_s`. Whether the client hung up before the last piece (it cancelled between tokens) is
recorded: a real server cannot be held mid-caption on cue, and the real model is too fast to catch.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HeldStream:
    """The server's state: `started` is set once a caption request streams, `release()` lets it go on."""

    def __init__(self, pieces: int = 40, piece_s: float = 0.05) -> None:
        self.pieces = pieces
        self.piece_s = piece_s
        self.started = threading.Event()
        self.hung_up: list[int] = []  # per request that the client left early: pieces sent before it left
        self.completed = 0
        self._release = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def release(self) -> None:
        self._release.set()

    def stream(self, write: Callable[[bytes], None]) -> None:
        """One streamed answer: a piece, hold until released, then the rest (stops when the client leaves)."""
        for i in range(self.pieces):
            last = i == self.pieces - 1
            chunk = {"choices": [{"delta": {"content": f"word{i} "}, "finish_reason": "stop" if last else None}]}
            try:
                write(f"data: {json.dumps(chunk)}\n\n".encode())
            except OSError:  # the client closed the connection: it cancelled the caption
                self.hung_up.append(i)
                return
            if i == 0:
                self.started.set()
                self._release.wait(60)
            else:
                time.sleep(self.piece_s)
        write(b"data: [DONE]\n\n")
        self.completed += 1

    @contextmanager
    def serving(self) -> Iterator[HeldStream]:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        thread = threading.Thread(target=self._httpd.serve_forever, name="model-server", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._release.set()
            self._httpd.shutdown()
            self._httpd.server_close()


def _handler(state: HeldStream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # the client's start-up probe: the model list
            body = json.dumps({"object": "list", "data": [{"id": "held"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()

            def write(data: bytes) -> None:
                self.wfile.write(data)
                self.wfile.flush()

            state.stream(write)

    return Handler
