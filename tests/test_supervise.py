"""The supervision loop: back-off, reconnects, clean ends and stall detection."""

from __future__ import annotations

import random
import threading
import time

from edged.config.schema import BackoffConfig
from edged.logs import get_logger
from edged.supervise import Backoff, Health, PeerDown, SourceEnded, SourceState, Supervisor


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter() -> None:
    """1, 2, 4, 8 ... capped at max, each within +-jitter."""
    b = Backoff(BackoffConfig(initial=1.0, max=10.0, jitter=0.2), rng=random.Random(7))
    delays = [b.next_delay() for _ in range(8)]
    for delay, base in zip(delays, [1, 2, 4, 8, 10, 10, 10, 10], strict=True):
        assert base * 0.8 <= delay <= base * 1.2
    b.reset()
    assert 0.8 <= b.next_delay() <= 1.2


class FlakySession:
    """A scripted session (a fake: it stands in for a device that fails on cue)."""

    def __init__(self, steps: list[str], supervisor_ref: list[Supervisor]) -> None:
        self.steps = steps
        self.ref = supervisor_ref
        self.closed = False

    def step(self) -> None:
        if not self.steps:
            time.sleep(0.01)
            return
        what = self.steps.pop(0)
        if what == "fail":
            raise OSError("device went away")
        if what == "end":
            raise SourceEnded("end of file")
        self.ref[0].mark_activity()

    def close(self) -> None:
        self.closed = True


def run_until(sup: Supervisor, states: list[SourceState], want: SourceState, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while want not in states and time.monotonic() < deadline:
        time.sleep(0.01)
    assert want in states, states


def test_failure_reconnects_and_a_clean_end_stops() -> None:
    """A read failure leads to RECONNECTING and a new session; SourceEnded ends the thread as ENDED."""
    scripts = [["ok", "fail"], ["ok", "ok", "end"]]
    sessions: list[FlakySession] = []
    ref: list[Supervisor] = []
    states: list[SourceState] = []

    def connect() -> FlakySession:
        s = FlakySession(scripts.pop(0), ref)
        sessions.append(s)
        return s

    def on_health(h: Health) -> None:
        states.append(h.state)

    sup = Supervisor("t", connect, BackoffConfig(initial=0.05, max=0.1, jitter=0), on_health, get_logger())
    ref.append(sup)
    sup.start()
    run_until(sup, states, SourceState.ENDED)
    assert sup.stop(2)
    assert states[:4] == [SourceState.STREAMING, SourceState.RECONNECTING, SourceState.STREAMING, SourceState.ENDED]
    assert all(s.closed for s in sessions)
    assert sup.health().reconnects == 1


def test_connect_errors_back_off_and_keep_trying() -> None:
    """A source that can't be opened keeps being retried (and never raises out of its thread)."""
    attempts: list[float] = []

    def connect() -> FlakySession:
        attempts.append(time.monotonic())
        raise ConnectionRefusedError("connection refused")

    sup = Supervisor("t", connect, BackoffConfig(initial=0.02, max=0.05, jitter=0), lambda h: None, get_logger())
    sup.start()
    time.sleep(0.4)
    assert sup.stop(2)
    assert len(attempts) >= 4
    health = sup.health()
    assert health.reconnects == len(attempts)


def test_stall_is_detected_by_the_watchdog_and_cleared_by_data() -> None:
    """No data for longer than the stall timeout -> STALLED (counted); the next unit -> STREAMING."""
    now = [100.0]
    gate = threading.Event()
    ref: list[Supervisor] = []

    class Quiet:
        def step(self) -> None:
            if gate.is_set():
                gate.clear()
                ref[0].mark_activity()
            time.sleep(0.005)

        def close(self) -> None:
            pass

    sup = Supervisor("t", Quiet, BackoffConfig(), lambda h: None, get_logger(), stall_timeout=2.0,
                     clock=lambda: now[0])
    ref.append(sup)
    sup.start()
    gate.set()
    while gate.is_set():
        time.sleep(0.005)
    assert sup.health().state is SourceState.STREAMING
    now[0] += 1.0
    assert not sup.check_stall()
    now[0] += 1.5
    assert sup.check_stall()
    assert sup.health().state is SourceState.STALLED
    assert sup.health().stalls == 1
    gate.set()
    while gate.is_set():
        time.sleep(0.005)
    assert sup.health().state is SourceState.STREAMING
    assert sup.stop(2)


def test_a_down_peer_is_probed_and_reconnected_as_soon_as_it_answers() -> None:
    """After a `PeerDown` connect failure the back-off (30 s here) is cut short once the cheap probe says the
    peer answers again; meanwhile the probe runs at most once per probe interval."""
    up = threading.Event()
    connects: list[float] = []
    probes: list[float] = []

    def connect() -> FlakySession:
        connects.append(time.monotonic())
        raise PeerDown("connection refused")

    def probe() -> bool:
        probes.append(time.monotonic())
        return up.is_set()

    sup = Supervisor("t", connect, BackoffConfig(initial=30.0, max=30.0, jitter=0), lambda h: None, get_logger(),
                     probe=probe, probe_interval=0.1)
    sup.start()
    try:
        time.sleep(1.0)
        assert len(connects) == 1
        assert 3 <= len(probes) <= (probes[-1] - connects[0]) / 0.1 + 1  # probing, never faster than the interval
        up.set()
        returned = time.monotonic()
        deadline = returned + 10
        while len(connects) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(connects) == 2
        assert connects[1] - returned < 5.0  # within a probe interval or so: far from the 30 s back-off
    finally:
        assert sup.stop(2)


def test_a_peer_that_answers_but_refuses_waits_out_its_back_off() -> None:
    """A failure other than `PeerDown` (the server answers, but e.g. rejects the login) is not probed: the
    back-off paces the connects, so a bad password never turns into a connect per probe."""
    connects: list[float] = []
    probes: list[float] = []

    def connect() -> FlakySession:
        connects.append(time.monotonic())
        raise PermissionError("401 Unauthorized")

    def probe() -> bool:
        probes.append(time.monotonic())
        return True

    sup = Supervisor("t", connect, BackoffConfig(initial=0.4, max=0.4, jitter=0), lambda h: None, get_logger(),
                     probe=probe, probe_interval=0.05)
    sup.start()
    time.sleep(1.0)
    assert sup.stop(2)
    assert probes == []
    assert 2 <= len(connects) <= 3
