"""The running pipeline for one config: per camera a source and an analyser, per microphone a source
(and its keyword spotter), and the status each source reports.

`Pipeline.start()` records each component as it starts, so a failure half-way through start-up
still stops what already runs; `stop()` stops them in reverse order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from edged.analysis.camera import CameraAnalyser
from edged.config.schema import CameraConfig, Config, MicrophoneConfig
from edged.control.features import Feature, FeatureRegistry
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
    """Every source of one config, started and stopped together; privacy stops and restarts one camera."""

    def __init__(self, config: Config, publish: Publish, secrets: Callable[[CameraConfig], str | None],
                 features: FeatureRegistry | None = None) -> None:
        self.config = config
        self.log = get_logger(component="pipeline")
        self._publish = publish
        self._secrets = secrets
        self._features = features
        self.cameras: dict[str, CameraPipeline] = {}
        self.microphones: dict[str, MicrophonePipeline] = {}
        self._privacy: set[str] = set()
        self._lock = threading.RLock()

    def start(self) -> None:
        """Start every enabled source; if one fails to start, stop the ones already running and re-raise."""
        try:
            for cam in self.config.cameras.values():
                self._register_camera_features(cam)
                if cam.id not in self._privacy:
                    self._start_camera(cam)
            for mic in self.config.all_microphones:
                if mic.camera not in self._privacy:
                    self._start_microphone(mic)
        except BaseException:
            self.stop()
            raise

    def _register_camera_features(self, cam: CameraConfig) -> None:
        if self._features is None:
            return
        on = self._features.add(Feature(cam.id, "privacy", "switch", "Privacy", cam.privacy,
                                        lambda v, c=cam.id: self.set_privacy(c, bool(v)), icon="mdi:eye-off"))
        if on:
            self._privacy.add(cam.id)
            self._report(cam.id, "camera", SourceState.PRIVACY, "privacy mode: nothing is captured")

    def _start_camera(self, cam: CameraConfig) -> None:
        if not cam.enabled:
            self._report(cam.id, "camera", SourceState.DISABLED, "disabled in config")
            return
        pipe = CameraPipeline(cam, self._publish, self._secrets(cam))
        self.cameras[cam.id] = pipe
        pipe.start()

    def _start_microphone(self, mic: MicrophoneConfig) -> None:
        camera = self.config.cameras.get(mic.camera) if mic.camera else None
        if not mic.enabled or (camera is not None and not camera.enabled):
            self._report(mic.id, "microphone", SourceState.DISABLED, "disabled in config")
            return
        url = self.cameras[camera.id].source.url if camera is not None and camera.id in self.cameras else None
        pipe = MicrophonePipeline(mic, self._publish, url)
        self.microphones[mic.id] = pipe
        pipe.start()

    def _report(self, source: str, kind: str, state: SourceState, reason: str) -> None:
        for event in health_events(source, kind, fixed_health(state, reason)):
            self._publish(event)

    def set_privacy(self, camera: str, on: bool) -> None:
        """Privacy ON stops the camera and its microphones (devices released); OFF starts them again."""
        with self._lock:
            if on == (camera in self._privacy):
                return
            mics = [m for m in self.config.all_microphones if m.camera == camera]
            if on:
                self._privacy.add(camera)
                for mic in mics:
                    self._stop_one(self.microphones.pop(mic.id, None))
                    self._report(mic.id, "microphone", SourceState.PRIVACY, "privacy mode: nothing is captured")
                self._stop_one(self.cameras.pop(camera, None))
                self._report(camera, "camera", SourceState.PRIVACY, "privacy mode: nothing is captured")
            else:
                self._privacy.discard(camera)
                self._start_camera(self.config.cameras[camera])
                for mic in mics:
                    self._start_microphone(mic)
            self.log.info("privacy_changed", camera=camera, privacy=on)

    @staticmethod
    def _stop_one(pipe: CameraPipeline | MicrophonePipeline | None) -> None:
        if pipe is not None:
            pipe.stop()

    def stop(self) -> None:
        """Stop microphones, then cameras (the reverse of start)."""
        with self._lock:
            for mic in reversed(list(self.microphones.values())):
                mic.stop()
            for cam in reversed(list(self.cameras.values())):
                cam.stop()
            self.microphones.clear()
            self.cameras.clear()
        if self._features is not None:
            for source in [*self.config.cameras, *(m.id for m in self.config.all_microphones)]:
                self._features.remove_source(source)

    def check_stalls(self) -> None:
        with self._lock:
            sources = [p.source.supervisor for p in [*self.cameras.values(), *self.microphones.values()]]
        for supervisor in sources:
            supervisor.check_stall()

    def healthy(self) -> bool:
        """All processing threads alive (sources may be reconnecting: that is handled, not unhealthy)."""
        with self._lock:
            return all(p.alive() for p in [*self.cameras.values(), *self.microphones.values()])

    def stats(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            out: dict[str, dict[str, Any]] = {cid: cam.stats() for cid, cam in self.cameras.items()}
            out.update({mid: mic.stats() for mid, mic in self.microphones.items()})
        for cam in self._privacy:
            out[cam] = {"kind": "camera", "state": SourceState.PRIVACY.value}
        return out
