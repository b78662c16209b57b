"""Triggers: the reasons to look at a camera (or at an image handed in), each with a priority and a deadline."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from edged.events import TriggerKind
from edged.inference.protocol import CaptionResult

_ids = itertools.count(1)

IMAGE_LANE = "(images)"  # where handed-in images queue; no camera id can be this (ids are [A-Za-z0-9_-]+)

# What a caller should make of a refusal: `busy` try again soon (HTTP 429), `unavailable` no model or
# edged is stopping (503), `stale` it could not be done before its deadline (503), `failed` the model
# raised (500), `refused` this request cannot be done as asked (a camera's setting, privacy, ...).
ErrorKind = Literal["busy", "unavailable", "stale", "failed", "refused"]


def new_id(prefix: str) -> str:
    """A short unique id (time-based, so ids sort by creation and differ across restarts)."""
    return f"{prefix}-{int(time.time() * 1000):x}-{next(_ids)}"


class TriggerError(str):
    """Why a trigger got no result: the text for the caller (it is the string), and its `kind`."""

    kind: ErrorKind

    def __new__(cls, text: str, kind: ErrorKind = "refused") -> TriggerError:
        self = super().__new__(cls, text)
        self.kind = kind
        return self


Done = Callable[["Trigger", CaptionResult | None, TriggerError | None], None]  # (trigger, result, error)


class StreamSink:
    """Forwards a job's text as the model writes it, to one caller, never the same text twice.

    A job that is preempted runs again from the start; greedy decoding writes the same text again, so
    only what goes past what the caller already has is forwarded. `restart()` marks a new run."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self._out = out
        self._sent = 0  # characters the caller has
        self._run = 0  # characters this run has written

    def restart(self) -> None:
        self._run = 0

    def __call__(self, piece: str) -> None:
        start, self._run = self._run, self._run + len(piece)
        if self._run > self._sent:
            self._out(piece[max(0, self._sent - start):])
            self._sent = self._run


@dataclass(frozen=True, eq=False)
class HandedImage:
    """An image handed in with its question (the HTTP API): not a camera frame, so it has no camera state,
    no privacy gate and no event, and its answer goes to the caller only."""

    pixels: np.ndarray  # BGR uint8, as the captioners take it
    prompt: str
    max_new_tokens: int | None = None
    stream: StreamSink | None = None


@dataclass(frozen=True, eq=False)
class Trigger:
    """A request to caption (or answer about) one camera, or an image handed in (`image`, in IMAGE_LANE).

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
    image: HandedImage | None = None
    _answered: threading.Lock = field(default_factory=threading.Lock, repr=False)  # taken by the one answer
    _withdrawn: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def priority(self) -> int:
        return self.kind.priority

    @property
    def answers(self) -> bool:
        """True for triggers that someone waits on (a response must be sent)."""
        return self.on_done is not None

    @property
    def withdrawn(self) -> bool:
        """The caller gave up (an HTTP client went away): nothing more is to be done for it."""
        return self._withdrawn.is_set()

    def withdraw(self) -> None:
        """Mark it given up; the scheduler drops it wherever it is (see `Scheduler.withdraw`)."""
        self._withdrawn.set()
        self._answered.acquire(blocking=False)  # nobody is listening any more: no answer is sent

    def finish(self, result: CaptionResult | None, error: TriggerError | str | None = None) -> None:
        """Answer the waiting caller exactly once (later calls do nothing). A plain-text error is `refused`."""
        if self.on_done is not None and self._answered.acquire(blocking=False):  # atomic: two threads may try
            if error is not None and not isinstance(error, TriggerError):
                error = TriggerError(error)
            self.on_done(self, result, error)
