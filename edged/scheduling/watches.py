"""Watches: a camera's standing yes/no questions, as pure state (no threads, no clocks: times are passed in).

A watch is *due* when one of its triggers happened since it was last answered (motion, a keyword, its
periodic interval); the scheduler then asks every due watch of a camera on one frame, together with
whatever caption that camera's next job writes. Each answer is a probability of yes (`p_yes`), and
`Debounce` turns a stream of them into an ON/OFF state: `hold` confident answers in a row on the other
side change it; an unsure answer (neither side reaching `min_confidence`) breaks the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from edged.config.schema import WatchConfig
from edged.events import TriggerKind


def confident_side(p_yes: float, min_confidence: float) -> bool | None:
    """True (yes) or False (no) when that side's probability reaches `min_confidence`, else None (unsure)."""
    if p_yes >= min_confidence:
        return True
    if 1.0 - p_yes >= min_confidence:
        return False
    return None


@dataclass(frozen=True)
class Debounce:
    """A watch's decided state (None before the first decision) and the run of answers against it."""

    state: bool | None = None
    run_side: bool | None = None  # the side the current run of confident answers is on
    run: int = 0  # how many in a row

    def step(self, p_yes: float, min_confidence: float, hold: int) -> Debounce:
        """The state after one more answer."""
        side = confident_side(p_yes, min_confidence)
        if side is None or side == self.state:  # unsure, or agreeing with the state: no change is under way
            return Debounce(self.state)
        run = self.run + 1 if self.run_side == side else 1
        if run >= hold:
            return Debounce(side)
        return Debounce(self.state, side, run)


@dataclass
class Watch:
    """One watch of one camera at run time: its settings (switch, edited question), when it is due, and
    its debounced state. Owned by the scheduler, which changes it under its lock."""

    config: WatchConfig
    question: str
    enabled: bool
    next_periodic: float | None  # monotonic time of the next periodic asking; None: not periodic
    due_since: float | None = None  # monotonic time it became due; None: not due
    debounce: Debounce = field(default_factory=Debounce)
    since: float | None = None  # wall time the state last changed
    event_id: str | None = None  # the open event while the state is ON

    @classmethod
    def start(cls, config: WatchConfig, now: float) -> Watch:
        period = config.period
        # A periodic watch is asked soon after start: its state is unknown until then.
        return cls(config, config.question.strip(), config.enabled, None if period is None else now)

    @property
    def name(self) -> str:
        return self.config.id

    @property
    def state(self) -> bool | None:
        return self.debounce.state

    def triggered(self, kind: TriggerKind, now: float) -> None:
        """Something happened on the camera (motion, a keyword): due, if the watch is asked on it."""
        if self.enabled and kind in self.config.on and self.due_since is None:
            self.due_since = now

    def tick(self, now: float) -> None:
        """The periodic interval has passed: due (asked whether or not anything moved)."""
        if self.next_periodic is not None and now >= self.next_periodic:
            period = self.config.period or 0.0
            self.next_periodic = now + period
            if self.enabled and self.due_since is None:
                self.due_since = now

    def answered(self, p_yes: float, now: float, wall: float) -> bool:
        """Take an answer; True when it changed the state."""
        before = self.debounce.state
        self.debounce = self.debounce.step(p_yes, self.config.min_confidence, self.config.hold)
        self.due_since = None
        period = self.config.period
        if period is not None:
            self.next_periodic = now + period
        changed = self.debounce.state != before
        if changed:
            self.since = wall
        return changed

    def skipped(self, now: float) -> None:
        """Asking failed (the model raised): not due until its next trigger or interval."""
        self.due_since = None
        period = self.config.period
        if period is not None:
            self.next_periodic = now + period

    def set_enabled(self, on: bool, now: float) -> None:
        """The switch: off stops asking; on asks again right away."""
        self.enabled = on
        self.due_since = now if on else None

    def set_question(self, question: str, now: float) -> None:
        """An edited question: the run toward a change starts again (answers to the old question do not
        count), the state stands until the new question decides otherwise, and it is asked right away."""
        self.question = question
        self.debounce = Debounce(self.debounce.state)
        if self.enabled:
            self.due_since = now


def due(watches: Iterable[Watch], busy: Iterable[str] = ()) -> list[Watch]:
    """The watches to ask now, oldest due first (`busy`: names already being asked in a running job)."""
    skip = set(busy)
    ready = [w for w in watches if w.enabled and w.due_since is not None and w.name not in skip]
    return sorted(ready, key=lambda w: (w.due_since or 0.0, w.name))
