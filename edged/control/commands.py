"""Parsing of incoming MQTT commands: pure functions from (topic, payload) to a command or an error.

`on_message` runs on paho's thread and does only this, then enqueues; the daemon executes.
Nothing here changes state, so a malformed command provably changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from edged.events import Incoming

MAX_PAYLOAD = 16 * 1024  # bytes; the largest real command (an `ask` of 1,000 characters) is far below
MAX_DEPTH = 8  # JSON nesting; commands are flat objects, and deep nesting is how json.loads is made to recurse
MAX_TRANSACTION = 200  # characters of an echoed transaction id
HA_STATUS_TOPIC_SUFFIX = "/status"

# A JSON string (an unterminated one runs to the end, so every match consumes: linear time) or a bracket.
# The string is written as runs of plain characters between escapes: a 10 MB string (an image in an API
# request) is one fast scan, not ten million alternations (36 ms instead of 1.2 s, holding the GIL).
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


class CommandError(ValueError):
    """A command that cannot be carried out; the text says what is wrong (shown to the caller)."""


@dataclass(frozen=True)
class SetFeature:
    """`<base>/<source>/<feature>/set` with its raw value text."""

    source: str
    feature: str
    value: str
    topic: str


@dataclass(frozen=True)
class Request:
    """`<base>/request/<command>` with its JSON arguments."""

    command: str
    args: dict[str, Any]
    transaction: str | int | float | bool | None
    response_topic: str
    correlation: bytes | None = None


@dataclass(frozen=True)
class HomeAssistantStatus:
    """Home Assistant's birth/last-will message."""

    online: bool


@dataclass(frozen=True)
class Rejected:
    """A message that failed to parse: answered with an error (where it has a response topic), changes nothing."""

    topic: str
    error: str
    response_topic: str | None = None
    transaction: str | int | float | bool | None = None
    correlation: bytes | None = None
    command: str = field(default="set")


Command = SetFeature | Request | HomeAssistantStatus | Rejected


def parse(message: Incoming, base: str, discovery_prefix: str | None) -> Command:
    """Turn any incoming message into a command, or a `Rejected` that says what is wrong and where.

    The one entry point for every subscribed topic (requests, `/set`, Home Assistant's status): it
    checks size, UTF-8, JSON depth and types before anything else looks at the payload, and it never
    raises, whatever the bytes.
    """
    if discovery_prefix is not None and message.topic == discovery_prefix + HA_STATUS_TOPIC_SUFFIX:
        try:
            return _parse_ha_status(message, read_text(message))
        except CommandError as exc:
            return Rejected(message.topic, str(exc))  # Home Assistant's topic: nobody to answer, a log line
    try:
        text = read_text(message)
        if message.topic.startswith(f"{base}/request/"):
            return _parse_request(message, base, text)
        return _parse_set(message, base, text)
    except CommandError as exc:
        return _reject(message, base, str(exc))


def read_text(message: Incoming) -> str:
    """The payload as text: at most MAX_PAYLOAD bytes of UTF-8 (raises `CommandError` naming the topic)."""
    if len(message.payload) > MAX_PAYLOAD:
        raise CommandError(f"{message.topic}: payload is {len(message.payload)} bytes; the limit is {MAX_PAYLOAD}")
    try:
        return message.payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(f"{message.topic}: payload is not UTF-8 text (byte {exc.start})") from None


def json_depth(payload: bytes) -> int:
    """How deeply JSON arrays/objects nest in `payload` (brackets inside strings don't count), without
    parsing it: the check that keeps json.loads away from deep recursion."""
    depth = deepest = 0
    for token in _JSON_TOKEN.findall(payload):
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def read_json_object(message: Incoming, text: str) -> dict[str, Any]:
    """The payload as a JSON object (empty payload = `{}`); raises `CommandError` for anything else."""
    if not text.strip():
        return {}
    depth = json_depth(message.payload)
    if depth > MAX_DEPTH:
        raise CommandError(f"{message.topic}: JSON nests {depth} levels deep; the limit is {MAX_DEPTH}")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CommandError(f"{message.topic}: payload is not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(data, dict):
        raise CommandError(f"{message.topic}: payload must be a JSON object (got {type(data).__name__})")
    return data


def _parse_ha_status(message: Incoming, text: str) -> HomeAssistantStatus:
    status = text.strip()
    if status not in ("online", "offline"):
        raise CommandError(f"{message.topic}: expected online or offline (got {status[:40]!r})")
    return HomeAssistantStatus(status == "online")


def _parse_set(message: Incoming, base: str, text: str) -> SetFeature:
    parts = message.topic[len(base) + 1:].split("/") if message.topic.startswith(base + "/") else []
    if len(parts) != 3 or parts[2] != "set" or not all(parts[:2]):
        raise CommandError(f"{message.topic}: expected {base}/<source>/<feature>/set")
    value = text.strip()
    if not value:
        raise CommandError(f"{message.topic}: empty payload (send ON, OFF or a number)")
    return SetFeature(parts[0], parts[1], value, message.topic)


def _parse_request(message: Incoming, base: str, text: str) -> Request:
    command = message.topic[len(f"{base}/request/"):]
    if not command or "/" in command:
        raise CommandError(f"{message.topic}: expected {base}/request/<command>")
    args = read_json_object(message, text)
    transaction = _transaction(message, args.pop("transaction", None))
    response = message.response_topic or f"{base}/response/{command}"
    return Request(command, args, transaction, response, message.correlation)


def _transaction(message: Incoming, value: Any) -> str | int | float | bool | None:
    """The caller's transaction id, echoed in the response: a short string or a number."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str) and len(value) <= MAX_TRANSACTION:
        return value
    kind = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
    raise CommandError(f"{message.topic}: \"transaction\" must be a string of at most {MAX_TRANSACTION} "
                       f"characters or a number (got {kind})")


def _reject(message: Incoming, base: str, error: str) -> Rejected:
    if not message.topic.startswith(f"{base}/request/"):
        return Rejected(message.topic, error, f"{base}/response/set")
    command = message.topic[len(f"{base}/request/"):].split("/")[0] or "unknown"
    transaction = None
    with contextlib.suppress(CommandError):  # echo the caller's transaction when the payload is readable at all
        transaction = _transaction(message, read_json_object(message, read_text(message)).get("transaction"))
    response = message.response_topic or f"{base}/response/{command}"
    return Rejected(message.topic, error, response, transaction, message.correlation, command)


def parse_switch(text: str) -> bool:
    """ON/OFF (and true/false, 1/0) -> bool."""
    value = text.strip().strip('"').upper()
    if value in ("ON", "TRUE", "1"):
        return True
    if value in ("OFF", "FALSE", "0"):
        return False
    raise CommandError(f"expected ON or OFF (got {text[:40]!r})")


def parse_number(text: str, minimum: float, maximum: float) -> float:
    """A number within [minimum, maximum]."""
    try:
        value = float(text.strip().strip('"'))
    except ValueError:
        raise CommandError(f"expected a number (got {text[:40]!r})") from None
    if math.isnan(value) or not (minimum <= value <= maximum):
        raise CommandError(f"must be between {minimum:g} and {maximum:g} (got {text[:40]})")
    return value
