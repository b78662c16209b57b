"""The camera requests: `caption_now` (a caption of a camera now) and `ask` (a question about it), each
validated here and answered on its response topic when the model has written the text."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from edged.config.schema import CameraConfig
from edged.control.commands import CommandError, Request
from edged.control.executor import CommandExecutor, Responder
from edged.events import CaptionAnswer, TriggerKind
from edged.inference.protocol import CaptionResult
from edged.scheduling.captions import title_of
from edged.scheduling.scheduler import Scheduler
from edged.scheduling.triggers import Trigger

MAX_QUESTION = 1000  # characters


class Cameras(Protocol):
    """What the requests need of the running pipeline."""

    @property
    def scheduler(self) -> Scheduler: ...

    def in_privacy(self, camera: str) -> bool: ...


class CameraRequests:
    """Handlers of `caption_now` and `ask`; `cameras()` is the running pipeline (None while it restarts)."""

    def __init__(self, config: Callable[[], Mapping[str, CameraConfig]], cameras: Callable[[], Cameras | None]) -> None:
        self._config = config
        self._cameras = cameras

    def register(self, executor: CommandExecutor) -> None:
        executor.register("caption_now", self.caption_now)
        executor.register("ask", self.ask)

    def caption_now(self, request: Request, responder: Responder) -> Any:
        """`{"camera": "porch"}` -> the caption, when the model has written it."""
        self._submit(request, responder, TriggerKind.REQUEST, self._camera(request))
        return None

    def ask(self, request: Request, responder: Responder) -> Any:
        """`{"camera": "porch", "question": "Is the garage door open?"}` -> the answer."""
        camera = self._camera(request)
        question = request.args.get("question")
        if not isinstance(question, str) or not question.strip():
            raise CommandError("ask needs a non-empty \"question\" (text)")
        if len(question) > MAX_QUESTION:
            raise CommandError(f"question is {len(question)} characters; the limit is {MAX_QUESTION}")
        self._submit(request, responder, TriggerKind.ASK, camera, question.strip())
        return None

    def _camera(self, request: Request) -> str:
        camera = request.args.get("camera")
        config = self._config()
        if not isinstance(camera, str) or camera not in config:
            raise CommandError(f"unknown camera {camera!r} (cameras: {', '.join(config) or 'none'})")
        if not config[camera].enabled:
            raise CommandError(f"camera {camera!r} is disabled in the config")
        cameras = self._cameras()
        if cameras is not None and cameras.in_privacy(camera):
            raise CommandError(f"camera {camera!r} is in privacy mode")
        return camera

    def _submit(self, request: Request, responder: Responder, kind: TriggerKind, camera: str,
                question: str | None = None) -> None:
        cameras = self._cameras()
        if cameras is None:
            raise CommandError("edged is restarting; try again")

        def done(trigger: Trigger, result: CaptionResult | None, error: str | None) -> None:
            if result is None:
                responder.error(error or "no caption")
                return
            text = result.text.strip()
            responder.ok(CaptionAnswer(camera, title_of(text), text, result.model,
                                       (time.monotonic() - trigger.ts) * 1000, tuple(result.tokens),
                                       question).to_payload())

        scheduler = cameras.scheduler
        scheduler.trigger(scheduler.make_trigger(kind, camera, question=question or "",
                                                 transaction=request.transaction, on_done=done))
