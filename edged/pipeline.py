"""The running pipeline for one config: per camera a source and an analyser, per microphone a source
(and its keyword spotter), and the status each source reports.

`Pipeline.start()` registers every component's stop in an `ExitStack` as it starts, so a failure
half-way through start-up still stops what already runs; `stop()` unwinds in reverse order.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from edged.analysis.camera import CameraAnalyser
from edged.config.schema import CameraConfig, Config, MicrophoneConfig
from edged.events import Event, SourceHealth, SourceStatus
from edged.logs import get_logger
from edged.sources.audio.source import AudioSource
from edged.sources.video import VideoSource
from edged.supervise import Health, SourceState

Publish = Callable[[Event], None]


def health_events(source: str, kind: str, health: Health) -> list[Event]:
    """The status (for Home Assistant availability) and health (what happened) of a source."""
    return [
        SourceStatus(source, health.state.status),  # type: ignore[arg-type]
        SourceHealth(source, kind, health.state.value, health.reason, round(health.since_wall, 3),  # type: ignore[arg-type]
                     health.reconnects, health.stalls),
    ]


def fixed_health(state: SourceState, reason: str) -> Health:
    now = time.monotonic()
    return Health(state, reason, time.time(), now, 0, 0, None)


class CameraPipeline:
    """One camera: capture thread -> bounded frame queue -> analysis thread."""

    def __init__(self, config: CameraConfig, publish: Publish, password: str | None) -> None:
        self.config = config
        self._publish = publish
        self.source = VideoSource(config, self._on_health, password)
        self.analyser = CameraAnalyser(config, self.source.frames)

    def _on_health(self, health: Health) -> None:
        for event in health_events(self.config.id, "camera", health):
            self._publish(event)

    def start(self) -> None:
        self.analyser.start()
        self.source.start()

    def stop(self) -> None:
        self.source.stop()
        self.analyser.stop()

    def alive(self) -> bool:
        return self.analyser.alive

    def stats(self) -> dict[str, Any]:
        return {**self.source.snapshot_stats(), **self.analyser.stats()}


class MicrophonePipeline:
    """One microphone: reader thread -> bounded chunk queue -> keyword spotting."""

    def __init__(self, config: MicrophoneConfig, publish: Publish, camera_url: str | None) -> None:
        self.config = config
        self._publish = publish
        self.source = AudioSource(config, self._on_health, camera_url)

    def _on_health(self, health: Health) -> None:
        for event in health_events(self.config.id, "microphone", health):
            self._publish(event)

    def start(self) -> None:
        self.source.start()

    def stop(self) -> None:
        self.source.stop()

    def alive(self) -> bool:
        return True

    def stats(self) -> dict[str, Any]:
        return self.source.snapshot_stats()


class Pipeline:
    """Every source of one config, started and stopped together."""

    def __init__(self, config: Config, publish: Publish, secrets: Callable[[CameraConfig], str | None]) -> None:
        self.config = config
        self.log = get_logger(component="pipeline")
        self._publish = publish
        self._secrets = secrets
        self.cameras: dict[str, CameraPipeline] = {}
        self.microphones: dict[str, MicrophonePipeline] = {}
        self._stack = contextlib.ExitStack()

    def start(self) -> None:
        try:
            for cam in self.config.cameras.values():
                self._start_camera(cam)
            for mic in self.config.all_microphones:
                self._start_microphone(mic)
        except BaseException:
            self._stack.close()
            raise

    def _start_camera(self, cam: CameraConfig) -> None:
        if not cam.enabled:
            self._report_disabled(cam.id, "camera")
            return
        pipe = CameraPipeline(cam, self._publish, self._secrets(cam))
        pipe.start()
        self._stack.callback(pipe.stop)
        self.cameras[cam.id] = pipe

    def _start_microphone(self, mic: MicrophoneConfig) -> None:
        camera = self.config.cameras.get(mic.camera) if mic.camera else None
        if not mic.enabled or (camera is not None and not camera.enabled):
            self._report_disabled(mic.id, "microphone")
            return
        url = self.cameras[camera.id].source.url if camera is not None and camera.id in self.cameras else None
        pipe = MicrophonePipeline(mic, self._publish, url)
        pipe.start()
        self._stack.callback(pipe.stop)
        self.microphones[mic.id] = pipe

    def _report_disabled(self, source: str, kind: str) -> None:
        for event in health_events(source, kind, fixed_health(SourceState.DISABLED, "disabled in config")):
            self._publish(event)

    def stop(self) -> None:
        self._stack.close()

    def check_stalls(self) -> None:
        for cam in self.cameras.values():
            cam.source.supervisor.check_stall()
        for mic in self.microphones.values():
            mic.source.supervisor.check_stall()

    def healthy(self) -> bool:
        """All processing threads alive (sources may be reconnecting: that is handled, not unhealthy)."""
        return all(p.alive() for p in [*self.cameras.values(), *self.microphones.values()])

    def stats(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {cid: cam.stats() for cid, cam in self.cameras.items()}
        out.update({mid: mic.stats() for mid, mic in self.microphones.items()})
        return out
