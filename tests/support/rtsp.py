"""Starts tests/support/rtsp_server.py (GStreamer's RTSP server) with the system Python."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.broker import free_port, wait_port

SYSTEM_PYTHON = "/usr/bin/python3"  # has PyGObject (python3-gi); the venv's Python does not
SCRIPT = Path(__file__).with_name("rtsp_server.py")


class RtspServer:
    """A live RTSP stream at `url`; `kill()`/`start()` on the same port, `stall()`/`resume()` the data.

    `login=(user, password)`: the stream needs them (basic auth); `url` then names the user only."""

    def __init__(self, audio: bool = False, port: int | None = None, fps: int = 15,
                 login: tuple[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.audio = audio
        self.fps = fps
        self.login = login
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        user = f"{self.login[0]}@" if self.login else ""
        return f"rtsp://{user}127.0.0.1:{self.port}/live"

    def start(self) -> RtspServer:
        cmd = [SYSTEM_PYTHON, str(SCRIPT), "--port", str(self.port), "--fps", str(self.fps)]
        env = dict(os.environ)
        if self.audio:
            cmd.append("--audio")
        if self.login:
            cmd += ["--user", self.login[0]]
            env["RTSP_PASSWORD"] = self.login[1]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sys.stderr, text=True,
                                     env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"RTSP server did not start: {line!r}")
        wait_port(self.port)
        return self

    def _send(self, word: str) -> str:
        assert self.proc is not None
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def stall(self) -> None:
        assert self._send("stall") == "stalled"

    def resume(self) -> None:
        assert self._send("resume") == "resumed"

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        self.proc = None
