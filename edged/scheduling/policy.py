"""The scheduler's decisions as pure functions of their inputs: what runs next, what is stale, what
preempts, and how the periodic interval adapts. No threads, no clocks: everything is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from edged.events import TriggerKind
from edged.scheduling.triggers import Trigger

ASK_QUEUE = 4  # questions kept per camera; a fifth waiting one is refused
AGED_WATCH_PRIORITY = 4  # a watch due this long goes ahead of everything (never preempting) ...
WATCH_AGE_S = 30.0  # ... after this many seconds


@dataclass(frozen=True)
class Decision:
    """What to run now (if anything) and which pending triggers were dropped as stale."""

    run: Trigger | None
    stale: tuple[Trigger, ...]


def admit(pending: Sequence[Trigger], new: Trigger) -> tuple[list[Trigger], list[Trigger]]:
    """A camera's pending triggers after `new` arrives, and those it displaced.

    Latest wins per camera: `new` replaces pending captions of the same or lower priority (they
    would describe an older moment); a pending one of higher priority stays and `new` is dropped.
    Questions are different: each asks something else, so up to ASK_QUEUE of them queue in order.
    Handed-in images (the HTTP API's lane) each have their own caller: they queue in order, bounded by
    the API's own limit on requests in flight.
    A watch trigger (due watches, nothing to caption) only fetches the camera's due watches, which any
    job of the camera carries: it is not added when a caption of at least its priority is pending, and
    such a caption takes its place; a pending periodic caption stays beside it (and rides along).
    """
    if new.image is not None:
        return [*pending, new], []
    if new.kind is TriggerKind.WATCH:
        if any(t.kind is TriggerKind.WATCH or (t.kind is not TriggerKind.ASK and t.priority >= new.priority)
               for t in pending):
            return list(pending), [new]
        return [*pending, new], []
    if new.kind is TriggerKind.ASK:
        asks = [t for t in pending if t.kind is TriggerKind.ASK]
        others = [t for t in pending if t.kind is not TriggerKind.ASK]
        if len(asks) >= ASK_QUEUE:
            return list(pending), [new]
        return [*others, *asks, new], []
    keep, dropped = [], []
    for old in pending:
        if old.kind is TriggerKind.ASK or old.priority > new.priority:
            keep.append(old)
        else:
            dropped.append(old)
    if any(t.kind not in (TriggerKind.ASK, TriggerKind.WATCH) and t.priority > new.priority for t in keep):
        return keep, [*dropped, new]
    return [*keep, new], dropped


def would_miss(trigger: Trigger, now: float, expected_s: float) -> bool:
    """A job that cannot finish before its deadline (at the current expected caption time)."""
    return now + expected_s > trigger.deadline


def dispatch_priority(trigger: Trigger, now: float) -> int:
    """A trigger's rank when choosing what runs next. A watch trigger (its `ts`: when its oldest watch
    became due) ranks with motion until it has waited WATCH_AGE_S, then ahead of everything: a watch-only
    job is short (one image encode, one prefill per question, no token loop), so it delays a caption by
    little, and however long a burst of keyword captions or requests lasts, a due watch waits at most
    WATCH_AGE_S plus the job running then."""
    if trigger.kind is TriggerKind.WATCH and now - trigger.ts >= WATCH_AGE_S:
        return AGED_WATCH_PRIORITY
    return trigger.priority


def choose_next(pending: Mapping[str, Sequence[Trigger]], now: float, expected_s: float,
                last_served: Mapping[str, float], after_image: bool = False) -> Decision:
    """Highest priority first (`dispatch_priority`); among equals the camera served longest ago (fair),
    then the oldest trigger.

    Turn-taking with handed-in images (the HTTP API): right `after_image` was served, camera work that
    waits goes next whatever its priority, so however many API requests keep coming they get at most
    every other turn while a camera waits; with no camera work waiting they take every turn."""
    stale: list[Trigger] = []
    live: list[Trigger] = []
    for triggers in pending.values():
        for t in triggers:
            (stale if would_miss(t, now, expected_s) else live).append(t)
    if after_image:
        cameras = [t for t in live if t.image is None]
        live = cameras or live
    if not live:
        return Decision(None, tuple(stale))
    best = min(live, key=lambda t: (-dispatch_priority(t, now), last_served.get(t.camera, float("-inf")), t.ts))
    return Decision(best, tuple(stale))


def should_preempt(running: Trigger, waiting: Iterable[Trigger], cameras_turn: bool = False) -> Trigger | None:
    """A waiting trigger of strictly higher priority than the running one (periodic < motion < keyword < ask).
    A camera's job running on its turn after an image (`cameras_turn`) is not preempted by images: it
    would start again from its first token on every turn and never finish. A watch trigger preempts
    nothing: the job running now carries due watches of its camera, and other cameras' watches wait
    one job."""
    better = [t for t in waiting if t.priority > running.priority and t.kind is not TriggerKind.WATCH
              and not (cameras_turn and t.image is not None)]
    return max(better, key=lambda t: (t.priority, -t.ts)) if better else None


@dataclass(frozen=True)
class AdaptiveInterval:
    """The periodic caption interval: quiet scenes slow down toward `maximum`, activity speeds up toward
    `minimum`. Each caption moves it by one step (x1.5 when quiet, /2 when busy)."""

    minimum: float
    maximum: float
    current: float

    @classmethod
    def start(cls, minimum: float, maximum: float) -> AdaptiveInterval:
        return cls(minimum, maximum, minimum)

    def after(self, busy: bool) -> AdaptiveInterval:
        nxt = self.current / 2.0 if busy else self.current * 1.5
        return AdaptiveInterval(self.minimum, self.maximum, min(self.maximum, max(self.minimum, nxt)))
