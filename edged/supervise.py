"""One supervision loop for every I/O resource: connect -> step... -> on error back off and reconnect.

Cameras, microphones and the MQTT link all run through `Supervisor`, so reconnect behaviour, state
reporting and stop semantics are written once. A source never takes the daemon down: every
exception ends in an explicit state (RECONNECTING, or ENDED for a finished file) and is logged with
the source's id.
"""

from __future__ import annotations

import enum
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from edged.config.schema import BackoffConfig


class SourceState(str, enum.Enum):
    """What a supervised source is doing (published in its `health` topic)."""

    STARTING = "starting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    STALLED = "stalled"
    ENDED = "ended"
    DISABLED = "disabled"
    PRIVACY = "privacy"
    STOPPED = "stopped"

    @property
    def status(self) -> str:
        """The Home Assistant availability value for this state."""
        if self is SourceState.STREAMING:
            return "online"
        if self in (SourceState.DISABLED, SourceState.PRIVACY):
            return "disabled"
        return "offline"


class SourceEnded(Exception):
    """A finite source (a file without `loop`) reached its end: not an error."""


class PeerDown(Exception):
    """A connect found nothing answering at the source's address (refused, timed out, no route).

    While a source's peer is down, its supervisor polls the source's cheap `probe` during the back-off and
    connects as soon as the peer answers again (see `Supervisor`).
    """


# How often a down peer is probed while backing off: a camera is back within this of its server's return,
# and a dead server sees about one TCP connect per interval per source.
PROBE_INTERVAL = 0.5


class Session(Protocol):
    """An open connection to a source."""

    def step(self) -> None:
        """Read and hand on the next unit (a frame, a chunk); raise on failure, `SourceEnded` at the end."""

    def close(self) -> None:
        """Release the device or connection (idempotent)."""


@dataclass
class Backoff:
    """Capped exponential back-off with jitter: initial, 2x, 4x, ... up to max, each +-jitter."""

    config: BackoffConfig
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        base = min(self.config.max, self.config.initial * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        spread = base * self.config.jitter
        return max(0.05, float(base + self.rng.uniform(-spread, spread)))

    def reset(self) -> None:
        self.attempt = 0


@dataclass(frozen=True)
class Health:
    """A snapshot of a source's state for status topics and stats."""

    state: SourceState
    reason: str
    since_wall: float
    since: float
    reconnects: int
    stalls: int
    last_activity: float | None  # monotonic time of the last unit read


StateListener = Callable[[Health], None]


class Supervisor:
    """Owns one source's thread: opens sessions, steps them, and reconnects after failures.

    `probe` (optional) is a cheap check that the source's peer answers at all (a TCP connect). After a
    connect failed with `PeerDown`, the back-off is cut short as soon as the probe succeeds: the expensive
    connect (an RTSP open takes 1-6 s) then starts within `probe_interval` of the peer's return, instead of
    up to a whole back-off delay (max + jitter) later. A peer that answers but refuses (wrong password, no
    such stream) is not probed: it waits out the back-off, so it is never hammered with connects.
    """

    def __init__(
        self,
        name: str,
        connect: Callable[[], Session],
        backoff: BackoffConfig,
        on_health: StateListener,
        log: Any,
        stall_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        probe: Callable[[], bool] | None = None,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        self.name = name
        self._connect = connect
        self._probe = probe
        self._probe_interval = probe_interval
        self._backoff = Backoff(backoff)
        self._on_health = on_health
        self._log = log
        self._stall_timeout = stall_timeout
        self._clock = clock
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._state = SourceState.STARTING
        self._reason = "starting"
        self._since = clock()
        self._since_wall = time.time()
        self._reconnects = 0
        self._stalls = 0
        self._last_activity: float | None = None
        self._session: Session | None = None
        self._last_failure_log = float("-inf")

    # -- owner API -------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> bool:
        """Ask the loop to end and wait for it; True when the thread has exited."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        alive = self._thread.is_alive()
        if alive:
            self._log.warning("thread_stop_timeout", thread=self.name, timeout_s=timeout)
        return not alive

    @property
    def stopping(self) -> threading.Event:
        return self._stop

    def health(self) -> Health:
        with self._lock:
            return Health(self._state, self._reason, self._since_wall, self._since, self._reconnects,
                          self._stalls, self._last_activity)

    def mark_activity(self) -> None:
        """Called by the session for every unit read; clears a stall."""
        now = self._clock()
        with self._lock:
            self._last_activity = now
        if self._state in (SourceState.STALLED, SourceState.STARTING, SourceState.RECONNECTING):
            self._backoff.reset()
            self._set_state(SourceState.STREAMING, "streaming")

    def check_stall(self) -> bool:
        """Watchdog tick: mark the source STALLED when it has delivered nothing for `stall_timeout`."""
        if self._stall_timeout is None:
            return False
        now = self._clock()
        with self._lock:
            state, last = self._state, self._last_activity
        if state is not SourceState.STREAMING or last is None:
            return False
        age = now - last
        if age <= self._stall_timeout:
            return False
        with self._lock:
            self._stalls += 1
        self._set_state(SourceState.STALLED, f"no data for {age:.1f} s")
        self._log.warning("source_stalled", age_s=round(age, 2), stalls=self._stalls)
        return True

    # -- the loop --------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            session = self._open()
            if session is None:
                continue
            try:
                while not self._stop.is_set():
                    session.step()
            except SourceEnded as end:
                self._set_state(SourceState.ENDED, str(end) or "end of stream")
                self._log.info("source_ended", reason=str(end) or "end of stream")
                return
            except Exception as exc:  # a failing source must never take the daemon down
                if self._stop.is_set():
                    break
                self._fail("read_failed", exc)
            finally:
                session.close()
                self._session = None
        self._set_state(SourceState.STOPPED, "stopped")

    def _open(self) -> Session | None:
        try:
            session = self._connect()
        except Exception as exc:
            self._fail("connect_failed", exc)
            return None
        self._session = session
        self._log.info("source_connected")
        return session

    def _fail(self, what: str, exc: BaseException) -> None:
        delay = self._backoff.next_delay()
        with self._lock:
            self._reconnects += 1
        reason = f"{what.replace('_', ' ')}: {describe_error(exc)}"
        repeated = reason == self._reason
        self._set_state(SourceState.RECONNECTING, reason)
        now = self._clock()
        # A source that stays down logs its first failures, then once a minute (the status topic has it all).
        if not repeated or self._backoff.attempt <= 3 or now - self._last_failure_log >= 60.0:
            self._last_failure_log = now
            self._log.warning(what, error=describe_error(exc), retry_in_s=round(delay, 2),
                              attempt=self._backoff.attempt)
        if self._probe is not None and isinstance(exc, PeerDown):
            self._wait_for_peer(delay)
        else:
            self._stop.wait(delay)

    def _wait_for_peer(self, delay: float) -> None:
        """Back off for up to `delay`, probing the peer once per probe interval; return when it answers."""
        deadline = time.monotonic() + delay
        while not self._stop.wait(max(0.0, min(self._probe_interval, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                return
            if self._peer_answers():
                self._log.debug("source_answering")
                return

    def _peer_answers(self) -> bool:
        assert self._probe is not None
        try:
            return self._probe()
        except Exception as exc:  # a broken probe only costs the shortcut, never the source's thread
            self._log.debug("probe_failed", error=describe_error(exc))
            return False

    def _set_state(self, state: SourceState, reason: str) -> None:
        with self._lock:
            changed = state is not self._state or reason != self._reason
            if state is not self._state:
                self._since = self._clock()
                self._since_wall = time.time()
            self._state, self._reason = state, reason
        if changed:
            self._on_health(self.health())


def describe_error(exc: BaseException) -> str:
    """A one-line description of an exception for logs and status topics."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
