"""The recorder: takes moments from the hot path and writes them to the history on its own thread.

`record(event, frame)` is called by the scheduler right after it publishes a caption (or answers a
question). It turns the event into a `Moment` by its type (`MOMENTS`: one small function per event type)
and puts it, with the frame, on a bounded queue; it never blocks and never touches the disk. The
recorder thread encodes the snapshot, writes the file and the row, and applies retention after each
write and once a minute. A full queue drops the newest moment (DROP_NEWEST: the writer is behind, so the
moments already waiting keep their place); every drop is counted in stats and logged, at most once a
minute. `stop()` closes the queue and the thread writes what is still queued before it ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edged.analysis.history import AnalysedFrame, encode_jpeg
from edged.config.schema import HistoryConfig
from edged.events import Caption, Event, TriggerKind, WatchAttributes
from edged.logs import get_logger
from edged.memory.store import HistoryStore, Moment
from edged.queues import BoundedQueue, DropPolicy, QueueClosed

PRUNE_EVERY = 60.0  # seconds: age retention runs even when nothing is written
DROP_LOG_EVERY = 60.0  # seconds between `history_dropped` log lines


def caption_moment(caption: Caption) -> Moment:
    """A camera's caption, or (trigger `ask`) the answer to a question about it."""
    kind = "answer" if caption.trigger is TriggerKind.ASK else "caption"
    return Moment(caption.frame_ts, caption.camera, kind, caption.title, caption.caption, caption.trigger.value,
                  "" if caption.id.startswith("cap-") else caption.id, caption.question, caption.labels,
                  caption.threat_level, caption.model)


def watch_change_moment(change: WatchAttributes) -> Moment | None:
    """A watch's state change (the scheduler hands over the attributes of changes only): the decided state
    as title, the question and the deciding answer as text."""
    if change.state is None:
        return None
    state = "ON" if change.state else "OFF"
    answer = "yes" if change.p_yes >= 0.5 else "no"
    return Moment(change.frame_ts, change.camera, "watch", f"{change.watch}: {state}",
                  f"{change.question} {answer} (p_yes {change.p_yes:.2f})", TriggerKind.WATCH.value,
                  question=change.question, model=change.model)


# Event type -> its moment. A new kind of moment is one function added here.
MOMENTS: dict[type[Event], Callable[[Any], Moment | None]] = {Caption: caption_moment,
                                                              WatchAttributes: watch_change_moment}

Snapshot = AnalysedFrame | bytes | None  # a frame (encoded on the recorder's thread) or a JPEG already made


class Recorder:
    """Owns the history store and its writer thread (see the module doc)."""

    def __init__(self, config: HistoryConfig, root: Path, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.log = get_logger(component="history")
        self.store = HistoryStore(root, config.max_age, int(config.max_size_mb * 1_000_000), clock)
        self._queue: BoundedQueue[tuple[Moment, Snapshot]] = BoundedQueue(
            "history", config.queue_size, DropPolicy.DROP_NEWEST)
        self._thread = threading.Thread(target=self._run, name="history", daemon=True)
        self._stats_lock = threading.Lock()
        self.written = 0
        self.failed = 0
        self.pruned = 0
        self._rows = 0
        self._used = 0
        self._last_drop_log = -DROP_LOG_EVERY
        self._logged_drops = 0

    def start(self) -> None:
        """Apply retention once, then start the writer thread (`stop()` closes the database either way)."""
        removed = self.store.prune()
        with self._stats_lock:
            self._rows, self._used = self.store.count(), self.store.used_bytes()
        self.log.info("history_opened", path=str(self.store.root), moments=self._rows,
                      used_mb=round(self._used / 1e6, 1), pruned=removed, orphans_removed=self.store.orphans_removed)
        self._thread.start()

    # -- any thread ------------------------------------------------------------------------------------
    def record(self, event: Event, snapshot: Snapshot = None) -> bool:
        """Queue `event` (with its frame or JPEG) for the history; False when it is not kept (a type with no
        moment, the queue full, the recorder stopped). Never blocks."""
        to_moment = MOMENTS.get(type(event))
        moment = to_moment(event) if to_moment is not None else None
        if moment is None:
            return False
        try:
            kept = self._queue.put((moment, snapshot))
        except QueueClosed:
            return False
        if not kept:
            self._log_drop()
        return kept

    def _log_drop(self) -> None:
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_EVERY:
            self._last_drop_log = now
            dropped = self._queue.dropped
            self.log.warning("history_dropped", dropped=dropped, since_last_log=dropped - self._logged_drops,
                             queue_size=self._queue.maxsize, policy="drop_newest")
            self._logged_drops = dropped

    def stop(self, timeout: float) -> bool:
        """Write what is queued, then close the database; False when `timeout` ran out first (logged)."""
        self._queue.close()
        if self._thread.ident is None:  # never started (start failed): nobody else closes the database
            self.store.close()
            return True
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            self.log.warning("history_not_flushed", queued=len(self._queue), timeout_s=timeout)
            return False
        return True

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stats(self) -> dict[str, Any]:
        with self._stats_lock:
            return {"moments": self._rows, "used_mb": round(self._used / 1e6, 2), "written": self.written,
                    "failed": self.failed, "pruned": self.pruned, "dropped": self._queue.dropped,
                    "queued": len(self._queue)}

    # -- the writer thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        next_prune = time.monotonic() + PRUNE_EVERY
        try:
            while True:
                try:
                    item = self._queue.get(timeout=max(0.0, next_prune - time.monotonic()))
                except QueueClosed:
                    break
                if item is not None:
                    self._write(*item)
                if item is not None or time.monotonic() >= next_prune:
                    self._prune()
                    next_prune = time.monotonic() + PRUNE_EVERY
        finally:
            self.store.close()
            self.log.info("history_closed", written=self.written, dropped=self._queue.dropped)

    def _write(self, moment: Moment, snapshot: Snapshot) -> None:
        try:
            self.store.add(moment, self._jpeg(snapshot))
        except Exception as exc:  # a full disk or a broken file: this moment is lost, the next one tried
            with self._stats_lock:
                self.failed += 1
            self.log.exception("history_write_failed", camera=moment.camera, kind=moment.kind, error=str(exc))
            return
        with self._stats_lock:
            self.written += 1

    def _jpeg(self, snapshot: Snapshot) -> bytes | None:
        if not self.config.snapshots or snapshot is None:
            return None
        if isinstance(snapshot, bytes):
            return snapshot
        image: np.ndarray = snapshot.image
        return encode_jpeg(image, self.config.snapshot_height, self.config.snapshot_quality)

    def _prune(self) -> None:
        try:
            removed = self.store.prune()
            rows, used = self.store.count(), self.store.used_bytes()
        except Exception as exc:
            self.log.exception("history_prune_failed", error=str(exc))
            return
        with self._stats_lock:
            self.pruned += removed
            self._rows, self._used = rows, used
        if removed:
            self.log.debug("history_pruned", removed=removed, moments=rows, used_mb=round(used / 1e6, 1))
