"""Triggers: the reasons to look at a camera, each with a priority and a deadline."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edged.events import TriggerKind
from edged.inference.protocol import CaptionResult

_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    """A short unique id (time-based, so ids sort by creation and differ across restarts)."""
    return f"{prefix}-{int(time.time() * 1000):x}-{next(_ids)}"


Done = Callable[["Trigger", CaptionResult | None, str | None], None]  # (trigger, result, error)


@dataclass(frozen=True, eq=False)
class Trigger:
    """A request to caption (or answer about) one camera.

    `ts` is the monotonic time it happened; frames from then on are candidates. `deadline` is the
    monotonic time after which a caption is stale. `on_done` (for requests and asks) is called once
    with the result or an error, whatever happens to the job.
    """

    kind: TriggerKind
    camera: str
    ts: float
    deadline: float
    event_id: str | None = None
    question: str = ""
    keyword: str | None = None
    transaction: object = None
    on_done: Done | None = None
    wall_ts: float = field(default_factory=time.time)
    _answered: threading.Lock = field(default_factory=threading.Lock, repr=False)  # taken by the one answer

    @property
    def priority(self) -> int:
        return self.kind.priority

    @property
    def answers(self) -> bool:
        """True for triggers that someone waits on (a response must be sent)."""
        return self.on_done is not None

    def finish(self, result: CaptionResult | None, error: str | None = None) -> None:
        """Answer the waiting caller exactly once (later calls do nothing)."""
        if self.on_done is not None and self._answered.acquire(blocking=False):  # atomic: two threads may try
            self.on_done(self, result, error)
