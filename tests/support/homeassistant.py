"""A real Home Assistant Core for tests: started on a free loopback port, onboarded, MQTT added.

`script/setup test` installs Home Assistant once into `.venv/homeassistant-2025.4` (its own Python
3.13 venv, from tests/homeassistant/requirements-2025.4.lock.txt); nothing here installs anything.
The harness talks to it as a user's frontend would: the REST API (onboarding, config flows,
services, states) and the websocket API (registries, the system log). The websocket client is a
minimal RFC 6455 one over a plain socket, so the tests need no extra package.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from tests.support.broker import free_port

VERSION = "2025.4"
CLIENT_ID = "http://127.0.0.1/"  # onboarding's OAuth client id: any URL will do for a local test
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
T = TypeVar("T")


def venv() -> Path:
    """Where `script/setup test` put Home Assistant: beside the test venv's own files."""
    return Path(os.environ.get("EDGED_HA_VENV", Path(sys.prefix) / f"homeassistant-{VERSION}"))


def missing() -> str | None:
    """Why Home Assistant cannot run here (None when it can)."""
    python = venv() / "bin" / "python"
    if not python.exists():
        return f"Home Assistant {VERSION} is not installed at {python.parent.parent}: run ./script/setup test"
    return None


class HomeAssistantError(RuntimeError):
    """Home Assistant answered with an error, or did not answer in time."""


class HomeAssistant:
    """`hass --skip-pip -c <workdir>/config` on 127.0.0.1 with an owner user and a token."""

    def __init__(self, workdir: Path) -> None:
        self.config_dir = workdir / "config"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "hass.log"
        self.token = ""
        self.proc: subprocess.Popen[bytes] | None = None

    # -- life cycle --------------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> HomeAssistant:
        """Start it, and return once the API answers and the owner is onboarded."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(
            "homeassistant:\n  name: edged test\n  time_zone: UTC\n  unit_system: metric\n"
            f"http:\n  server_host: 127.0.0.1\n  server_port: {self.port}\n", encoding="utf-8")
        with open(self.log_path, "ab") as log:
            # `python -m` rather than the `hass` script: a script's #! line pins the folder the venv was made in
            self.proc = subprocess.Popen([str(venv() / "bin" / "python"), "-m", "homeassistant", "--skip-pip",
                                          "-c", str(self.config_dir)], stdout=log, stderr=subprocess.STDOUT)
        self._wait(self._onboarding_open, timeout, "its HTTP API")
        self._onboard()
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def _onboarding_open(self) -> bool | None:
        """True once the onboarding API answers (None before: not up yet)."""
        if self.proc is not None and self.proc.poll() is not None:
            raise HomeAssistantError(f"hass exited with {self.proc.returncode}: {self.log_tail()}")
        try:
            steps = self.rest("GET", "/api/onboarding", auth=False)
        except (OSError, HomeAssistantError):
            return None
        return any(s["step"] == "user" for s in steps) or None

    def _onboard(self) -> None:
        """The owner user, its auth code exchanged for tokens, and a long-lived token for the tests."""
        user = self.rest("POST", "/api/onboarding/users", {
            "client_id": CLIENT_ID, "name": "Test", "username": "test", "password": "test-password-1",
            "language": "en"}, auth=False)
        tokens = self._form("/auth/token", {"grant_type": "authorization_code", "code": user["auth_code"],
                                            "client_id": CLIENT_ID})
        self.token = tokens["access_token"]
        self.token = self.ws("auth/long_lived_access_token", client_name="edged tests", lifespan=1)

    def add_mqtt(self, host: str, port: int) -> str:
        """The MQTT integration pointing at the test's broker, through the config flow; its entry id."""
        flow = self.rest("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        if flow.get("step_id") != "broker":
            raise HomeAssistantError(f"unexpected MQTT config flow step: {flow}")
        done = self.rest("POST", f"/api/config/config_entries/flow/{flow['flow_id']}",
                         {"broker": host, "port": port})
        if done.get("type") != "create_entry":
            raise HomeAssistantError(f"MQTT config flow did not create an entry: {done}")
        return str(done["result"]["entry_id"])

    # -- what a frontend would read ------------------------------------------------------------------
    def states(self) -> dict[str, dict[str, Any]]:
        return {s["entity_id"]: s for s in self.rest("GET", "/api/states")}

    def entities(self, platform: str = "mqtt") -> list[dict[str, Any]]:
        """Entity registry entries of one integration (unique_id, entity_id, device_id...)."""
        return [e for e in self.ws("config/entity_registry/list") if e.get("platform") == platform]

    def devices(self) -> list[dict[str, Any]]:
        return list(self.ws("config/device_registry/list"))

    def system_log(self) -> list[dict[str, Any]]:
        """Warnings and errors Home Assistant logged (what Settings > System > Logs shows)."""
        return list(self.ws("system_log/list"))

    def call_service(self, domain: str, service: str, **data: Any) -> Any:
        return self.rest("POST", f"/api/services/{domain}/{service}", data)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_for(self, probe: Callable[[], T | None], timeout: float, what: str) -> T:
        """`probe()` until it returns something other than None (or falsy)."""
        return self._wait(probe, timeout, what)

    def _wait(self, probe: Callable[[], T | None], timeout: float, what: str) -> T:
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result:
                return result
            if time.monotonic() > deadline:
                raise HomeAssistantError(f"Home Assistant: no {what} within {timeout:.0f}s")
            time.sleep(0.25)

    # -- REST ----------------------------------------------------------------------------------------
    def rest(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        return self._http(urllib.request.Request(self.url + path, data, headers, method=method))

    def _form(self, path: str, fields: dict[str, str]) -> Any:
        data = urllib.parse.urlencode(fields).encode()
        return self._http(urllib.request.Request(self.url + path, data, method="POST"))

    @staticmethod
    def _http(request: urllib.request.Request) -> Any:
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                kind = response.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            raise HomeAssistantError(f"{request.method} {request.full_url}: {exc.code} {exc.read()[:500]!r}") from None
        if kind == "application/json":
            return json.loads(raw) if raw else None
        return raw.decode()  # /api/template answers with the rendered text

    # -- websocket -----------------------------------------------------------------------------------
    def ws(self, command: str, **fields: Any) -> Any:
        """One websocket API command on a fresh authenticated connection; its result."""
        with _WebSocket("127.0.0.1", self.port, "/api/websocket") as sock:
            if sock.receive()["type"] != "auth_required":
                raise HomeAssistantError("websocket: no auth_required greeting")
            sock.send({"type": "auth", "access_token": self.token})
            if (reply := sock.receive())["type"] != "auth_ok":
                raise HomeAssistantError(f"websocket auth failed: {reply}")
            sock.send({"id": 1, "type": command, **fields})
            while (reply := sock.receive()).get("id") != 1:
                pass
        if not reply.get("success"):
            raise HomeAssistantError(f"websocket {command}: {reply.get('error')}")
        return reply["result"]


class _WebSocket:
    """Just enough RFC 6455 for a JSON request/response exchange: masked text frames out, any in."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=30)
        self.reader: BinaryIO = self.sock.makefile("rb")
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        status = self.reader.readline()
        headers = {}
        while (line := self.reader.readline().strip()):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        if b" 101 " not in status or headers.get("sec-websocket-accept") != accept:
            raise HomeAssistantError(f"websocket upgrade refused: {status!r}")

    def __enter__(self) -> _WebSocket:
        return self

    def __exit__(self, *_: object) -> None:
        self.reader.close()
        self.sock.close()

    def send(self, message: dict[str, Any]) -> None:
        self._send_frame(0x1, json.dumps(message).encode())

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        size = len(payload)
        head = bytes([0x80 | opcode])
        if size < 126:
            head += bytes([0x80 | size])
        elif size < 1 << 16:
            head += bytes([0x80 | 126]) + size.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + size.to_bytes(8, "big")
        mask = os.urandom(4)  # clients must mask every frame
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def receive(self) -> dict[str, Any]:
        """The next text message (fragments joined; pings answered)."""
        parts: list[bytes] = []
        while True:
            fin, opcode, payload = self._frame()
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode == 0x8:
                raise HomeAssistantError(f"websocket closed by Home Assistant: {payload[2:]!r}")
            parts.append(payload)
            if fin:
                return dict(json.loads(b"".join(parts)))

    def _frame(self) -> tuple[bool, int, bytes]:
        first, second = self._read(2)
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(self._read(2), "big")
        elif size == 127:
            size = int.from_bytes(self._read(8), "big")
        mask = self._read(4) if second & 0x80 else b""
        payload = self._read(size)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return bool(first & 0x80), first & 0x0F, payload

    def _read(self, size: int) -> bytes:
        data = self.reader.read(size)
        if len(data) != size:
            raise HomeAssistantError("websocket: connection closed mid-frame")
        return data
