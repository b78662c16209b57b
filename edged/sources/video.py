"""Video sources: RTSP streams, V4L2 devices and files through OpenCV's FFmpeg (or V4L2) backend.

Per camera, one supervised thread `grab()`s every frame (keeping the stream drained and the clock
honest) and `retrieve()`s - converts to BGR - only the frames analysed at `analysis_fps`. Frames go
into a bounded queue: live sources drop the oldest (the newest frame wins), files block (lossless
replay). Files can be paced at their native rate and looped.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edged.config.schema import CameraConfig, source_kind
from edged.config.urls import redact_url, with_password
from edged.logs import get_logger
from edged.metrics import RateMeter
from edged.queues import BoundedQueue, DropPolicy, QueueClosed
from edged.sources.frame import Frame
from edged.sources.reach import connect_error, port_answers
from edged.supervise import Health, PeerDown, SourceEnded, Supervisor

# OpenCV's FFmpeg backend reads these from the environment at every open. They are the same for every open
# in the process, so they are set once, before the first open, and never changed while another thread's
# open may be reading them (an unset value is ours to set; one given by the user is kept).
_OPENCV_FFMPEG_ENV = {
    # RTSP over TCP: UDP loses packets (smeared frames) on a busy Wi-Fi. Files ignore the option.
    "OPENCV_FFMPEG_CAPTURE_OPTIONS": "rtsp_transport;tcp",
    # Unless told FFmpeg is thread-safe (read since OpenCV 4.8), OpenCV holds one process-wide lock through
    # every FFmpeg open: one camera's open (1-6 s for RTSP, up to open_timeout for a peer that never
    # answers) held up every other camera's reconnect. FFmpeg >= 4 opens streams thread-safely itself.
    "OPENCV_FFMPEG_IS_THREAD_SAFE": "1",
}
_ENV_LOCK = threading.Lock()


class StreamError(RuntimeError):
    """A video stream failed to open or read; the message says which and why (never the password)."""


class StreamUnreachable(StreamError, PeerDown):
    """Nothing answers at the stream's host and port (refused, timed out, no route)."""


class FrameSelector:
    """Chooses which grabbed frames get decoded: the first frame at or after each 1/fps of stream time."""

    def __init__(self, fps: float) -> None:
        self.interval = 1.0 / fps
        self._next_due: float | None = None

    def offer(self, t: float) -> bool:
        """Whether the frame at stream time `t` (seconds) is analysed."""
        due = self._next_due
        tolerance = min(0.005, self.interval / 10)
        if due is not None and due - 2 * self.interval <= t < due - tolerance:
            return False
        # On time, or the clock jumped (a loop, a reconnect, a skipped stretch): re-anchor at t.
        late = due is None or t > due + self.interval or t < due - 2 * self.interval
        self._next_due = (t if late else due) + self.interval  # type: ignore[operator]
        return True


def capture_params(cam: CameraConfig) -> list[int]:
    """OpenCV open parameters: timeouts, and one decoder thread (a second buys little, see DESIGN)."""
    return [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(cam.open_timeout * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(cam.read_timeout * 1000),
        cv2.CAP_PROP_N_THREADS, 1,
    ]


def open_capture(cam: CameraConfig, url: str) -> cv2.VideoCapture:
    """Open the camera's stream; raises `StreamError` naming the (redacted) url."""
    kind = source_kind(cam.url)
    shown = redact_url(cam.url)
    if kind == "file" and not Path(url).is_file():
        raise StreamError(f"{shown}: file not found")
    if kind == "rtsp":
        probe_tcp(url, cam.open_timeout, shown)
    if kind == "v4l2":
        device: str | int = int(url) if url.isdigit() else url
        if isinstance(device, str) and not Path(device).exists():
            raise StreamError(f"{shown}: no such video device")
        cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
    else:
        _set_ffmpeg_env()
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, capture_params(cam))
    if not cap.isOpened():
        cap.release()
        raise StreamError(f"{shown}: cannot open ({kind} source)")
    return cap


def _set_ffmpeg_env() -> None:
    with _ENV_LOCK:
        for key, value in _OPENCV_FFMPEG_ENV.items():
            os.environ.setdefault(key, value)


def probe_tcp(url: str, timeout: float, shown: str) -> None:
    """Connect to the stream's host first, so a status can say "connection refused" or "timed out"."""
    error = connect_error(url, min(timeout, 5.0))
    if error is not None:
        raise StreamUnreachable(f"{shown}: {error}")


class VideoStats:
    """Counters of one camera, read by the stats publisher."""

    def __init__(self) -> None:
        self.input = RateMeter()
        self.analysed = RateMeter()
        self.decode_errors = 0
        self.last_frame_ts: float | None = None


class CaptureSession:
    """An open stream: each `step` grabs one frame and decodes it if it is due for analysis."""

    def __init__(self, source: VideoSource, cap: cv2.VideoCapture, generation: int, pts_offset: float) -> None:
        self._src = source
        self._cam = source.config
        self._cap = cap
        self._generation = generation
        self._live = not self._cam.is_file
        self._opened = time.monotonic()
        native = cap.get(cv2.CAP_PROP_FPS)
        self._native_fps = native if 1.0 <= native <= 240.0 else 25.0
        self._pts_offset = pts_offset
        self._last_pts = 0.0
        self._selector = source.selector
        self._pace_origin: float | None = None
        self.grabbed = 0

    def step(self) -> None:
        if not self._cap.grab():
            self._on_grab_failed()
        self.grabbed += 1
        self._src.supervisor.mark_activity()
        self._src.stats.input.mark()
        pts = self._stream_time()
        self._pace(pts)
        if not self._selector.offer(pts):
            return
        ok, image = self._cap.retrieve()
        if not ok or image is None or image.size == 0:
            self._src.stats.decode_errors += 1
            return
        self._src.deliver(image, pts, self._generation)

    def _on_grab_failed(self) -> None:
        if self._live:
            raise StreamError(f"{redact_url(self._cam.url)}: no frame within the read timeout or stream closed")
        position = self._cap.get(cv2.CAP_PROP_POS_FRAMES)
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        if count > 0 and position < count - 2:  # damaged data, not the end: skip ahead past it
            raise _Damaged(position)
        self._src.file_position = self._pts_offset + self._last_pts + 1.0 / self._native_fps
        if self._cam.loop:
            raise _Rewind()
        raise SourceEnded("end of file")

    def _stream_time(self) -> float:
        if self._live:
            return time.monotonic() - self._opened
        msec = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        self._last_pts = msec / 1000.0 if msec >= 0 else self._last_pts + 1.0 / self._native_fps
        return self._pts_offset + self._last_pts

    def _pace(self, pts: float) -> None:
        """Files with `realtime`: wait until the frame's time comes (interruptibly)."""
        if self._live or not self._cam.realtime:
            return
        now = time.monotonic()
        if self._pace_origin is None:
            self._pace_origin = now - pts
        delay = self._pace_origin + pts - now
        if delay > 0:
            self._src.supervisor.stopping.wait(delay)
        elif delay < -1.0:  # fell behind (a slow machine): don't race to catch up
            self._pace_origin = now - pts

    def close(self) -> None:
        self._cap.release()


class _Rewind(Exception):
    """A looping file reached its end: reopen it from the start (not counted as a failure)."""


class _Damaged(Exception):
    """The decoder gave up inside a file (corrupt data): reopen and seek past the damage."""

    def __init__(self, position: float) -> None:
        super().__init__(f"undecodable data at frame {position:.0f}")
        self.position = position


class VideoSource:
    """Owns one camera: its supervised capture thread, its frame queue and its counters."""

    def __init__(
        self,
        config: CameraConfig,
        on_health: Callable[[Health], None],
        password: str | None = None,
        queue: BoundedQueue[Frame] | None = None,
    ) -> None:
        self.config = config
        self.log = get_logger(camera=config.id)
        policy = DropPolicy.BLOCK if config.is_file and not config.realtime else DropPolicy.DROP_OLDEST
        self.frames: BoundedQueue[Frame] = queue or BoundedQueue(f"frames-{config.id}", config.queue_size, policy)
        self.stats = VideoStats()
        self.selector = FrameSelector(config.analysis_fps)
        self._url = with_password(config.url, password) if password else config.url
        self._seq = 0
        self._generation = 0
        self.file_position = 0.0  # stream time where the next loop of a file starts
        probe = functools.partial(port_answers, self._url) if source_kind(config.url) == "rtsp" else None
        self.supervisor = Supervisor(f"video-{config.id}", self._connect, config.reconnect, on_health, self.log,
                                     stall_timeout=config.stall_timeout, probe=probe)

    @property
    def url(self) -> str:
        """The url with credentials (for co-located audio); never log it."""
        return self._url

    def start(self) -> None:
        self.log.info("video_source_starting", url=redact_url(self.config.url), fps=self.config.analysis_fps,
                      policy=self.frames.policy.value)
        self.supervisor.start()

    def stop(self, timeout: float = 3.0) -> bool:
        self.supervisor.stopping.set()
        self.frames.close()  # releases a capture thread blocked on a full lossless queue
        return self.supervisor.stop(timeout)

    def _connect(self) -> _FileSession | CaptureSession:
        cap = open_capture(self.config, self._url)
        self._generation += 1
        session = CaptureSession(self, cap, self._generation, self.file_position)
        return _FileSession(self, session) if self.config.is_file else session

    def deliver(self, image: np.ndarray, pts: float, generation: int) -> None:
        """Queue an analysed frame (blocking files wait for room, checking for stop)."""
        self._seq += 1
        now = time.monotonic()
        frame = Frame(self.config.id, self._seq, now, time.time(), pts, image, generation)
        self.stats.analysed.mark()
        self.stats.last_frame_ts = now
        with contextlib.suppress(QueueClosed):  # stop() closes the queue to release a blocked put
            self.frames.put(frame)

    def snapshot_stats(self) -> dict[str, Any]:
        """The camera's figures for the stats topic."""
        health = self.supervisor.health()
        last = self.stats.last_frame_ts
        return {
            "kind": "camera", "state": health.state.value, "input_fps": round(self.stats.input.rate(), 2),
            "analysed_fps": round(self.stats.analysed.rate(), 2), "frames_analysed": self.stats.analysed.total,
            "dropped": self.frames.dropped, "queue_depth": len(self.frames), "reconnects": health.reconnects,
            "stalls": health.stalls, "decode_errors": self.stats.decode_errors,
            "last_frame_age_s": None if last is None else round(time.monotonic() - last, 2),
        }


class _FileSession:
    """Wraps a file's session: loops it at its end (stream time running on) and skips damaged stretches."""

    def __init__(self, source: VideoSource, session: CaptureSession) -> None:
        self._src = source
        self._session = session
        self._skip = 5.0  # frames to jump past damage; doubles while we land in the same damaged stretch

    def step(self) -> None:
        try:
            self._session.step()
        except _Rewind:
            self._reopen(self._src.file_position, 0.0)
            self._src.log.debug("file_looped", position_s=round(self._src.file_position, 2))
        except _Damaged as damage:
            self._skip_damage(damage.position)

    def _skip_damage(self, position: float) -> None:
        if self._session.grabbed >= 10:
            self._skip = 5.0  # decoding had resumed: this is a new damaged stretch
        else:
            self._skip *= 2
        self._src.stats.decode_errors += 1
        self._src.log.warning("file_damaged", frame=int(position), skip_frames=int(self._skip))
        self._reopen(self._session._pts_offset, position + self._skip)

    def _reopen(self, pts_offset: float, seek_frame: float) -> None:
        self._session.close()
        cap = open_capture(self._src.config, self._src.config.url)
        if seek_frame:
            if seek_frame >= cap.get(cv2.CAP_PROP_FRAME_COUNT) - 1:  # nothing decodable left
                cap.release()
                raise SourceEnded("end of file (the rest is damaged)")
            cap.set(cv2.CAP_PROP_POS_FRAMES, seek_frame)
        self._session = CaptureSession(self._src, cap, self._session._generation, pts_offset)

    def close(self) -> None:
        self._session.close()


def read_file_frames(path: str, analysis_fps: float = 5.0, camera: str = "file") -> Iterator[Frame]:
    """Every analysed frame of a video file, through the daemon's own capture path, as fast as possible.

    Used by `edged motion`, `edged replay` and benchmarks so they see exactly what the daemon sees.
    Raises `StreamError` when the file cannot be opened.
    """
    cam = CameraConfig(id=camera, url=path, analysis_fps=analysis_fps, realtime=False, loop=False, queue_size=8)
    open_capture(cam, path).release()  # fail fast with a clear error instead of a reconnect loop
    failures: list[str] = []

    def on_health(h: Health) -> None:
        if h.state.value == "reconnecting":
            failures.append(h.reason)

    source = VideoSource(cam, on_health=on_health)
    source.start()
    try:
        while True:
            try:
                frame = source.frames.get(timeout=0.2)
            except QueueClosed:
                return
            if frame is not None:
                yield frame
                continue
            state = source.supervisor.health().state.value
            if failures:
                raise StreamError(f"{path}: {failures[0]}")
            if state in ("ended", "stopped") and not len(source.frames):
                return
    finally:
        source.stop()
