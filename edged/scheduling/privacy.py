"""The privacy gate: what a camera captured before privacy went on is never published after it.

Privacy mode stops a camera and its microphones, but work on what they captured earlier may still be
under way on other threads: a caption on the model, a frame in analysis, a keyword just heard. Every
publisher of a camera's captured data (snapshots, events, captions, motion state, keyword hits) asks
the gate first and publishes while holding the camera's lock, so the switch cannot fall between the
check and the publish: a publication is either finished before privacy goes on or never made.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class _Camera:
    lock: threading.RLock = field(default_factory=threading.RLock)  # re-entrant: a caption publishes its event
    private: bool = False
    since: float = float("-inf")  # monotonic time privacy last went on


class PrivacyGate:
    """Per camera: whether it is private now, and since when nothing captured earlier may be published."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the table, not the cameras
        self._cameras: dict[str, _Camera] = {}

    def _camera(self, camera: str) -> _Camera:
        with self._lock:
            return self._cameras.setdefault(camera, _Camera())

    def close(self, camera: str) -> None:
        """Privacy ON: nothing of `camera` is published from now on, and nothing captured before now ever.
        Waits for a publication of the camera already under way."""
        cam = self._camera(camera)
        with cam.lock:
            cam.private = True
            cam.since = time.monotonic()

    def open(self, camera: str) -> None:
        """Privacy OFF: what the camera captures from now on may be published again."""
        cam = self._camera(camera)
        with cam.lock:
            cam.private = False

    def is_closed(self, camera: str) -> bool:
        return self._camera(camera).private

    def allows(self, camera: str, captured: float | None = None) -> bool:
        """Whether data of `camera` captured at monotonic time `captured` (None: just now) may be published."""
        cam = self._camera(camera)
        return not cam.private and (captured is None or captured > cam.since)

    @contextmanager
    def passing(self, camera: str, captured: float | None = None) -> Iterator[bool]:
        """Hold while publishing data of `camera` captured at `captured`; yields whether it may be published."""
        cam = self._camera(camera)
        with cam.lock:
            yield self.allows(camera, captured)
