"""Parsing of incoming MQTT commands: pure functions from (topic, payload) to a command or an error.

`on_message` runs on paho's thread and does only this, then enqueues; the daemon executes.
Nothing here changes state, so a malformed command provably changes nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from edged.outputs.mqtt.link import Incoming

MAX_PAYLOAD = 64 * 1024
HA_STATUS_TOPIC_SUFFIX = "/status"


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
    transaction: Any
    response_topic: str
    correlation: bytes | None = None


@dataclass(frozen=True)
class HomeAssistantStatus:
    """Home Assistant's birth/last-will message."""

    online: bool


@dataclass(frozen=True)
class Rejected:
    """A message that failed to parse: answered with an error, changes nothing."""

    topic: str
    error: str
    response_topic: str | None = None
    transaction: Any = None
    correlation: bytes | None = None
    command: str = field(default="set")


Command = SetFeature | Request | HomeAssistantStatus | Rejected


def parse(message: Incoming, base: str, discovery_prefix: str | None) -> Command:
    """Turn an incoming message into a command (or a `Rejected` that says why)."""
    topic = message.topic
    if discovery_prefix is not None and topic == discovery_prefix + HA_STATUS_TOPIC_SUFFIX:
        return HomeAssistantStatus(message.payload.strip() == b"online")
    if len(message.payload) > MAX_PAYLOAD:
        return _reject(message, base, f"payload is {len(message.payload)} bytes; the limit is {MAX_PAYLOAD}")
    try:
        if topic.startswith(f"{base}/request/"):
            return _parse_request(message, base)
        return _parse_set(message, base)
    except CommandError as exc:
        return _reject(message, base, str(exc))


def _parse_set(message: Incoming, base: str) -> SetFeature:
    parts = message.topic[len(base) + 1:].split("/") if message.topic.startswith(base + "/") else []
    if len(parts) != 3 or parts[2] != "set" or not all(parts[:2]):
        raise CommandError(f"{message.topic}: expected {base}/<source>/<feature>/set")
    try:
        text = message.payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CommandError(f"{message.topic}: payload is not UTF-8 text") from None
    if not text:
        raise CommandError(f"{message.topic}: empty payload (send ON, OFF or a number)")
    return SetFeature(parts[0], parts[1], text, message.topic)


def _parse_request(message: Incoming, base: str) -> Request:
    command = message.topic[len(f"{base}/request/"):]
    if not command or "/" in command:
        raise CommandError(f"{message.topic}: expected {base}/request/<command>")
    args = _json_object(message)
    response = message.response_topic or f"{base}/response/{command}"
    return Request(command, args, args.pop("transaction", None), response, message.correlation)


def _json_object(message: Incoming) -> dict[str, Any]:
    if not message.payload.strip():
        return {}
    try:
        data = json.loads(message.payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"{message.topic}: payload is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CommandError(f"{message.topic}: payload must be a JSON object (got {type(data).__name__})")
    return data


def _reject(message: Incoming, base: str, error: str) -> Rejected:
    command = "set"
    transaction = None
    if message.topic.startswith(f"{base}/request/"):
        command = message.topic[len(f"{base}/request/"):].split("/")[0] or "unknown"
        try:  # echo the caller's transaction when the payload is readable at all
            data = json.loads(message.payload)
            transaction = data.get("transaction") if isinstance(data, dict) else None
        except (ValueError, UnicodeDecodeError):
            transaction = None
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
