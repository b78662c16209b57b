"""Video sources against real media: H.264 files decoded by OpenCV/FFmpeg and a real RTSP server."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.config.schema import BackoffConfig, CameraConfig
from edged.queues import DropPolicy, QueueClosed
from edged.sources.video import FrameSelector, StreamError, VideoSource, read_file_frames
from edged.supervise import Health, SourceState
from tests.support.rtsp import RtspServer


@pytest.mark.parametrize(("input_fps", "analysis_fps", "seconds", "expected"), [
    (30, 5, 4, 20), (30, 30, 1, 30), (25, 2, 10, 20), (15, 5, 2, 10), (10, 20, 1, 10),
])
def test_frame_selector_keeps_one_frame_per_interval(input_fps: int, analysis_fps: float, seconds: int,
                                                     expected: int) -> None:
    """Frames at analysis_fps out of any input rate (never more than the input has)."""
    selector = FrameSelector(analysis_fps)
    kept = [i for i in range(input_fps * seconds) if selector.offer(i / input_fps)]
    assert len(kept) == expected


def test_frame_selector_reanchors_after_a_jump() -> None:
    """A reconnect or loop that jumps the clock doesn't starve or flood the analysis."""
    s = FrameSelector(5)
    assert [s.offer(t) for t in (0.0, 0.1, 0.2)] == [True, False, True]
    assert s.offer(100.0) is True
    assert s.offer(100.1) is False
    assert s.offer(100.2) is True


def test_file_frames_at_analysis_rate(clip: Path) -> None:
    """A 4 s 30 fps clip yields 20 frames at 5 fps, in order, with stream timestamps."""
    frames = list(read_file_frames(str(clip), 5))
    assert len(frames) == 20
    assert [f.seq for f in frames] == list(range(1, 21))
    assert frames[0].pts == pytest.approx(0.0, abs=0.05)
    assert frames[-1].pts == pytest.approx(3.8, abs=0.05)
    assert frames[0].image.shape == (360, 640, 3)
    assert not frames[0].image.flags.writeable


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """A missing file names itself."""
    with pytest.raises(StreamError, match=r"nope\.mp4: file not found"):
        list(read_file_frames(str(tmp_path / "nope.mp4")))


def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    """A file that isn't video is refused by name."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(StreamError, match=r"bad\.mp4: cannot open"):
        list(read_file_frames(str(bad)))


def collect(source: VideoSource, seconds: float) -> list[float]:
    pts: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            frame = source.frames.get(timeout=0.1)
        except QueueClosed:
            break
        if frame is not None:
            pts.append(frame.pts)
    return pts


def test_looping_file_keeps_stream_time_running(clip: Path) -> None:
    """A looped file plays on past its end; stream time keeps increasing across loops."""
    cam = CameraConfig(id="loop", url=str(clip), loop=True, realtime=False, analysis_fps=5, queue_size=4)
    source = VideoSource(cam, on_health=lambda h: None)
    assert source.frames.policy is DropPolicy.BLOCK  # a file not paced in real time is replayed losslessly
    source.start()
    pts = collect(source, 3.0)
    source.stop()
    assert len(pts) > 25  # more than one pass of 20 frames
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert pts[-1] > 4.0


def test_live_sources_drop_the_oldest_frame() -> None:
    """Live cameras use the newest-wins policy."""
    cam = CameraConfig(id="c", url="rtsp://127.0.0.1:9/x")
    assert VideoSource(cam, on_health=lambda h: None).frames.policy is DropPolicy.DROP_OLDEST


def wait_for(states: list[Health], want: SourceState, timeout: float, since: int = 0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i, h in enumerate(states[since:], start=since):
            if h.state is want:
                return i
        time.sleep(0.05)
    raise AssertionError(f"no {want.value} within {timeout}s: {[h.state.value for h in states]}")


@pytest.mark.slow
def test_rtsp_reconnects_after_the_server_dies_and_returns(rtsp: RtspServer) -> None:
    """Server killed -> RECONNECTING (with a reason); back after 5 s, when the back-off (default 0.5 s doubling
    to 3 s) has reached its cap -> STREAMING again within 5 s of its return, frames flow."""
    cam = CameraConfig(id="cam", url=rtsp.url, analysis_fps=5, read_timeout=2.0)
    states: list[Health] = []
    source = VideoSource(cam, on_health=states.append)
    source.start()
    try:
        wait_for(states, SourceState.STREAMING, 20)
        assert collect(source, 1.0)
        killed = time.monotonic()
        rtsp.kill()
        i = wait_for(states, SourceState.RECONNECTING, 15)
        assert states[i].reason
        time.sleep(max(0.0, killed + 5.0 - time.monotonic()))
        rtsp.start()
        back = time.monotonic()
        wait_for(states, SourceState.STREAMING, 25, since=i)
        assert time.monotonic() - back <= 5.0
        assert collect(source, 1.5)
        assert source.supervisor.health().reconnects >= 1
    finally:
        source.stop()
        if rtsp.proc is None:
            rtsp.start()


@pytest.mark.slow
def test_rtsp_stall_is_detected_while_the_connection_stays_open(rtsp: RtspServer) -> None:
    """The server stops sending but keeps the connection: the watchdog reports STALLED, then it recovers."""
    cam = CameraConfig(id="cam", url=rtsp.url, analysis_fps=5, read_timeout=4.0, stall_intervals=5,
                       reconnect=BackoffConfig(initial=0.5, max=1.0, jitter=0.1))
    states: list[Health] = []
    source = VideoSource(cam, on_health=states.append)
    source.start()
    try:
        wait_for(states, SourceState.STREAMING, 20)
        collect(source, 0.5)
        rtsp.stall()
        mark = len(states)
        deadline = time.monotonic() + 15
        while not any(h.state is SourceState.STALLED for h in states[mark:]) and time.monotonic() < deadline:
            source.supervisor.check_stall()
            time.sleep(0.1)
        stalled = [h for h in states[mark:] if h.state is SourceState.STALLED]
        assert stalled, [h.state.value for h in states]
        assert stalled[0].stalls == 1
        assert "no data for" in stalled[0].reason
        rtsp.resume()
        wait_for(states, SourceState.STREAMING, 30, since=states.index(stalled[0]))
        assert collect(source, 1.5)
    finally:
        source.stop()


def test_unreachable_camera_reports_why_and_keeps_retrying() -> None:
    """Nothing listening: RECONNECTING with 'Connection refused', never an exception out of the thread."""
    cam = CameraConfig(id="cam", url="rtsp://127.0.0.1:9/none", reconnect=BackoffConfig(initial=0.05, max=0.1))
    states: list[Health] = []
    source = VideoSource(cam, on_health=states.append)
    source.start()
    try:
        i = wait_for(states, SourceState.RECONNECTING, 5)
        assert "refused" in states[i].reason.lower()
        time.sleep(0.4)
        assert source.supervisor.health().reconnects >= 2
    finally:
        assert source.stop()


@pytest.fixture
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """A TCP port that accepts connections and never says anything (a camera whose RTSP service hangs)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:  # closed at the end of the test
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"rtsp://127.0.0.1:{listener.getsockname()[1]}/live", accepted
    listener.close()
    for conn in accepted:
        conn.close()


@pytest.mark.slow
def test_a_camera_stuck_in_its_open_does_not_hold_up_another(rtsp: RtspServer,
                                                            silent_server: tuple[str, list[socket.socket]]) -> None:
    """One camera's open hangs (its server accepts and never answers; open_timeout 30 s): another camera opens
    and streams meanwhile. (OpenCV used to serialise every FFmpeg open in the process.)"""
    url, accepted = silent_server
    stuck_states: list[Health] = []
    stuck = VideoSource(CameraConfig(id="stuck", url=url, open_timeout=30.0), on_health=stuck_states.append)
    states: list[Health] = []
    healthy = VideoSource(CameraConfig(id="ok", url=rtsp.url), on_health=states.append)
    stuck.start()
    try:
        deadline = time.monotonic() + 10
        while len(accepted) < 2 and time.monotonic() < deadline:  # the TCP probe, then FFmpeg's open
            time.sleep(0.05)
        assert len(accepted) >= 2
        healthy.start()
        wait_for(states, SourceState.STREAMING, 20)
        assert stuck_states == []  # still inside its open: it has not even failed yet
    finally:
        healthy.stop()
        stuck.stop(timeout=0.1)  # its thread ends with the open (FFmpeg cannot be interrupted from here)
