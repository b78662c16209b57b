"""Two-phase events: `new` (with a snapshot) the moment something happens, `update` when the caption
arrives, `end` when it is over. Latency hiding: automations fire on `new` within milliseconds; the
seconds-long caption follows on the same id.

Snapshots and `new` events carry what a camera captured, so they pass the camera's privacy gate
(`edged.scheduling.privacy`); an `end` carries nothing captured and is always sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from edged.analysis.history import AnalysedFrame, encode_jpeg
from edged.config.schema import SnapshotConfig
from edged.events import CameraEvent, Event, Snapshot, TriggerKind
from edged.logs import get_logger
from edged.metrics import Percentiles
from edged.scheduling.privacy import PrivacyGate
from edged.scheduling.triggers import new_id


class EventTracker:
    """Opens, updates and closes camera events; remembers what is open per camera."""

    def __init__(self, publish: Callable[[Event], None], snapshots: Mapping[str, SnapshotConfig],
                 gate: PrivacyGate | None = None) -> None:
        self._publish = publish
        self._snapshots = snapshots
        self.gate = gate if gate is not None else PrivacyGate()
        self._lock = threading.Lock()
        self._open: dict[str, tuple[str, TriggerKind, float]] = {}  # event id -> (camera, trigger, start wall ts)
        self._watches: dict[str, str] = {}  # event id -> its watch (a watch's `end` names it too)
        self._motion: dict[str, str] = {}  # camera -> its open motion event
        self.new_latency_ms = Percentiles()  # trigger -> `new` published
        self._log = get_logger(component="events")

    def snapshot(self, camera: str, frame: AnalysedFrame) -> bool:
        """Publish `frame` as the camera's snapshot, unless privacy went on after it was captured."""
        cfg = self._snapshots.get(camera, SnapshotConfig())
        with self.gate.passing(camera, frame.ts) as allowed:
            if allowed:
                self._publish(Snapshot(camera, encode_jpeg(frame.image, cfg.height, cfg.quality)))
        return allowed

    def open(self, camera: str, trigger: TriggerKind, frame: AnalysedFrame | None, trigger_ts: float, *,
             motion_area: float = 0.0, keyword: str | None = None, watch: str | None = None,
             title: str = "") -> str:
        """Publish `new` (and the frame as snapshot); returns the event id. A camera in privacy mode (or a
        frame from before it) publishes nothing, and the id returned is of no open event."""
        event_id = new_id("ev")
        wall = time.time()
        with self.gate.passing(camera, None if frame is None else frame.ts) as allowed:
            if not allowed:
                return event_id
            if frame is not None:
                self.snapshot(camera, frame)
            self._publish(CameraEvent("new", event_id, camera, trigger, wall, wall, title=title,
                                      motion_area=motion_area,
                                      keyword=keyword, has_snapshot=frame is not None, watch=watch))
            with self._lock:  # behind the gate too: whatever a privacy switch cancels next finds the event open
                self._open[event_id] = (camera, trigger, wall)
                if trigger is TriggerKind.MOTION:
                    self._motion[camera] = event_id
                if watch is not None:
                    self._watches[event_id] = watch
        latency_ms = (time.monotonic() - trigger_ts) * 1000
        self.new_latency_ms.add(latency_ms)
        self._log.info("event_new", camera=camera, trigger=trigger.value, id=event_id,
                        latency_ms=round(latency_ms, 1))
        return event_id

    def motion_started(self, camera: str, frame: AnalysedFrame, area: float) -> str:
        return self.open(camera, TriggerKind.MOTION, frame, frame.ts, motion_area=area)

    def motion_ended(self, camera: str) -> None:
        with self._lock:
            event_id = self._motion.pop(camera, None)
        if event_id is not None:
            self.close(event_id)

    def update(self, event_id: str, *, title: str, caption: str, labels: tuple[str, ...],
               rules: tuple[str, ...], has_snapshot: bool) -> None:
        """Publish `update` with the caption (the caller holds the camera's gate: a caption is captured data)."""
        with self._lock:
            known = self._open.get(event_id)
        if known is None:
            return
        camera, trigger, start = known
        self._publish(CameraEvent("update", event_id, camera, trigger, start, time.time(), None, title,
                                  caption, labels, has_snapshot=has_snapshot, rules=rules))

    def close(self, event_id: str) -> None:
        """Publish `end` (once)."""
        with self._lock:
            known = self._open.pop(event_id, None)
            watch = self._watches.pop(event_id, None)
        if known is None:
            return
        camera, trigger, start = known
        now = time.time()
        self._publish(CameraEvent("end", event_id, camera, trigger, start, now, now, watch=watch))

    def close_all(self) -> None:
        with self._lock:
            ids = list(self._open)
            self._motion.clear()
        for event_id in ids:
            self.close(event_id)

    def is_open(self, event_id: str) -> bool:
        with self._lock:
            return event_id in self._open
