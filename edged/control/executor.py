"""Carries out parsed commands on the daemon's command thread and answers on the response topics.

A table of small handlers, one per request command; every failure becomes an error response that
says what was wrong, and nothing is changed by a command that failed validation.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from edged.control.commands import (
    Command,
    CommandError,
    HomeAssistantStatus,
    Rejected,
    Request,
    SetFeature,
)
from edged.control.features import FeatureRegistry
from edged.events import CommandResponse, Event
from edged.logs import get_logger

Handler = Callable[[Request], Any]  # returns the response data, raises CommandError; None = answered later
Respond = Callable[[str, bytes, bytes | None], None]


class Responder:
    """Builds and sends the response of one request (now, or later for slow commands like `ask`)."""

    def __init__(self, request: Request | Rejected, respond: Respond) -> None:
        self._request = request
        self._respond = respond

    def ok(self, data: Any) -> None:
        self._send(CommandResponse(self._command, "ok", data, None, self._request.transaction))

    def error(self, message: str, data: Any = None) -> None:
        self._send(CommandResponse(self._command, "error", data, message, self._request.transaction))

    @property
    def _command(self) -> str:
        return self._request.command

    def _send(self, response: CommandResponse) -> None:
        topic = self._request.response_topic
        if not topic:
            return  # nobody to answer (Home Assistant's status topic): the log line is the answer
        payload = json.dumps(response.to_payload(), separators=(",", ":"), default=str).encode()
        self._respond(topic, payload, self._request.correlation)


class CommandExecutor:
    """Dispatches commands to the feature registry and to request handlers."""

    def __init__(self, base: str, features: FeatureRegistry, publish: Callable[[Event], None], respond: Respond,
                 on_ha_online: Callable[[], None] = lambda: None) -> None:
        self.base = base
        self.features = features
        self._publish = publish
        self._respond = respond
        self._on_ha_online = on_ha_online
        self.handlers: dict[str, Callable[[Request, Responder], Any]] = {}
        self.log = get_logger(component="commands")
        self.errors = 0
        self.executed = 0

    def register(self, command: str, handler: Callable[[Request, Responder], Any]) -> None:
        """`handler(request, responder)` returns data for an immediate ok, or None after answering itself."""
        self.handlers[command] = handler

    def execute(self, command: Command) -> None:
        """Carry out one command. Never raises: whatever a handler or a feature does, the caller (the
        daemon's main loop) goes on, and a request still gets an answer."""
        try:
            self._dispatch(command)
        except Exception as exc:
            self.errors += 1
            self.log.exception("command_failed", command=type(command).__name__, error=str(exc))
            if isinstance(command, SetFeature | Request | Rejected):
                with contextlib.suppress(Exception):  # answering must not be what fails next
                    self._answer_failure(command, exc)

    def _answer_failure(self, command: SetFeature | Request | Rejected, exc: Exception) -> None:
        if isinstance(command, SetFeature):
            command = Rejected(command.topic, "", f"{self.base}/response/set")
        Responder(command, self._respond).error(f"internal error: {exc}")

    def _dispatch(self, command: Command) -> None:
        if isinstance(command, SetFeature):
            self._set(command)
        elif isinstance(command, Request):
            self._request(command)
        elif isinstance(command, HomeAssistantStatus):
            self.log.info("home_assistant_status", online=command.online)
            if command.online:
                self._on_ha_online()
        else:
            self._rejected(command)

    def _set(self, command: SetFeature) -> None:
        try:
            state = self.features.set(command.source, command.feature, command.value)
        except CommandError as exc:
            self.errors += 1
            self.log.warning("set_rejected", topic=command.topic, payload=command.value[:80], error=str(exc))
            Responder(Rejected(command.topic, str(exc), f"{self.base}/response/set"), self._respond).error(
                str(exc), {"topic": command.topic})
            return
        self.executed += 1
        self.log.info("feature_set", source=state.source, feature=state.feature, value=state.value)
        self._publish(state)

    def _request(self, request: Request) -> None:
        responder = Responder(request, self._respond)
        handler = self.handlers.get(request.command)
        if handler is None:
            self.errors += 1
            known = ", ".join(sorted(self.handlers))
            responder.error(f"unknown command {request.command!r} (commands: {known})")
            return
        try:
            data = handler(request, responder)
        except CommandError as exc:
            self.errors += 1
            self.log.warning("request_rejected", command=request.command, error=str(exc))
            responder.error(str(exc))
            return
        except Exception as exc:  # a handler bug is answered, logged, and survived
            self.errors += 1
            self.log.exception("request_failed", command=request.command, error=str(exc))
            responder.error(f"internal error: {exc}")
            return
        self.executed += 1
        if data is not None:
            responder.ok(data)

    def _rejected(self, command: Rejected) -> None:
        self.errors += 1
        self.log.warning("command_rejected", topic=command.topic, error=command.error)
        Responder(command, self._respond).error(command.error, {"topic": command.topic})
