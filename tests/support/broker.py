"""A real Mosquitto broker on a free loopback port, started and stopped by tests (outages included)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


class Broker:
    """`mosquitto` with a generated config; `stop()`/`start()` make outages on the same port."""

    def __init__(self, workdir: Path, extra_config: str = "", port: int | None = None,
                 persistence: bool = False) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise RuntimeError("mosquitto is not installed: ./script/test installs it (or apt-get install mosquitto)")
        self.exe = exe
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.workdir = workdir
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        body = extra_config or "allow_anonymous true\n"
        store = f"persistence true\npersistence_location {workdir}/\n" if persistence else "persistence false\n"
        # As root, mosquitto would switch to its own user, which can't read the test's private temp files.
        user = "user root\n" if os.geteuid() == 0 else ""
        self.conf.write_text(f"{user}listener {self.port} 127.0.0.1\n{body}{store}log_dest stderr\n")
        self.log = workdir / f"mosquitto-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=log, stderr=log)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=5)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None
