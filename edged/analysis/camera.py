"""`CameraAnalyser`: the thread after a camera's frame queue. Each analysed frame gets its scores
(motion, sharpness), lands in the camera's history, and may raise triggers for the scheduler.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from edged.analysis.history import AnalysedFrame, FrameHistory, analysed
from edged.config.schema import CameraConfig
from edged.logs import get_logger
from edged.metrics import Percentiles
from edged.queues import BoundedQueue, QueueClosed
from edged.sources.frame import Frame

FrameListener = Callable[[AnalysedFrame], None]


class CameraAnalyser:
    """Consumes one camera's frames: score, remember, notify listeners (the scheduler)."""

    def __init__(self, config: CameraConfig, frames: BoundedQueue[Frame],
                 analyse: Callable[[Frame], AnalysedFrame] = analysed, listener: FrameListener | None = None,
                 history: FrameHistory | None = None) -> None:
        self.config = config
        self.log = get_logger(camera=config.id)
        self.frames = frames
        self.history = history if history is not None else FrameHistory(int(config.history * config.analysis_fps) + 1)
        self._listener = listener
        self._analyse = analyse
        self.analysis_ms = Percentiles(500)
        self.analysed = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"analyse-{config.id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> bool:
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.frames.get(timeout=0.25)
            except QueueClosed:
                return
            if frame is None:
                continue
            try:
                self.process(frame)
            except Exception as exc:  # one bad frame must not end the camera's analysis
                self.errors += 1
                self.log.exception("frame_analysis_failed", seq=frame.seq, pts=round(frame.pts, 3), error=str(exc))

    def process(self, frame: Frame) -> AnalysedFrame:
        """Analyse one frame (the thread's body; also called directly by `edged replay`)."""
        start = time.perf_counter()
        item = self._analyse(frame)
        self.history.add(item)
        self.analysed += 1
        self.analysis_ms.add((time.perf_counter() - start) * 1000)
        if self._listener is not None:
            self._listener(item)
        return item

    def stats(self) -> dict[str, Any]:
        return {"analysis_ms": self.analysis_ms.summary(), "analysis_errors": self.errors}
