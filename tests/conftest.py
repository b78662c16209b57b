"""Shared fixtures: a real Mosquitto broker, real RTSP servers, real media made by FFmpeg."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from edged.logs import configure_logging
from tests.support.broker import Broker
from tests.support.media import make_clip
from tests.support.rtsp import RtspServer


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Each test starts from the same structlog configuration (console lines on stderr)."""
    configure_logging("debug", "console")
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def clip(media_dir: Path) -> Path:
    """4 s of 640x360 H.264 at 30 fps with a 440 Hz AAC audio track."""
    return make_clip(media_dir / "clip.mp4")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh real Mosquitto on a free loopback port."""
    b = Broker(tmp_path).start()
    yield b
    b.stop()


@pytest.fixture
def rtsp() -> Iterator[RtspServer]:
    """A real RTSP server (GStreamer) streaming a live test pattern."""
    server = RtspServer().start()
    yield server
    server.kill()
