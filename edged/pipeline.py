"""The running pipeline for one config: per camera a source and an analyser, per microphone a source and
a keyword spotter, one scheduler and one model worker for all of them, and the status each reports.

`Pipeline.start()` records each component as it starts, so a failure half-way through start-up still
stops what already runs. `stop(timeout)` first asks every thread to end (sources, analysers, spotters,
the scheduler, the running caption), then waits for all of them against one deadline: a source stuck
in a blocking read costs the deadline once, not a join timeout per source. Threads still running then
are named in the log and left to the process exit (they are daemon threads).

Privacy mode stops one camera (and its microphones) completely, releasing the devices, and starts them
again when it is switched off. Before anything stops, the camera's privacy gate closes and its queued
and running captions are cancelled, so nothing captured before the switch is published after it.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edged.analysis.camera import CameraAnalyser
from edged.analysis.frame_analysis import FrameAnalysis
from edged.analysis.history import AnalysedFrame, FrameHistory
from edged.analysis.kws.spotter import KeywordSpotter
from edged.config.schema import QUESTION_LIMIT, CameraConfig, Config, MicrophoneConfig, question_problems
from edged.control.features import Feature, FeatureRegistry, Value
from edged.events import Event, KeywordDetected, MotionState, SourceHealth, SourceStatus, TriggerKind
from edged.inference.protocol import Captioner
from edged.inference.worker import InferenceWorker
from edged.logs import get_logger
from edged.scheduling.lifecycle import EventTracker
from edged.scheduling.scheduler import Record, Scheduler
from edged.sources.audio.source import AudioSource
from edged.sources.video import VideoSource
from edged.supervise import Health, SourceState

Publish = Callable[[Event], None]
STOP_TIMEOUT = 3.0  # `Pipeline.stop()`: for every thread together
PRIVACY_STOP_TIMEOUT = 3.0  # a camera and its microphones going private, together


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def health_events(source: str, kind: str, health: Health) -> list[Event]:
    """The status (for Home Assistant availability) and health (what happened) of a source."""
    return [
        SourceStatus(source, health.state.status),  # type: ignore[arg-type]
        SourceHealth(source, kind, health.state.value, health.reason, round(health.since_wall, 3),  # type: ignore[arg-type]
                     health.reconnects, health.stalls),
    ]


def _question_problem(question: str) -> str | None:
    """What is wrong with a question sent to `question_<watch>/set` (the config's own rule), or None."""
    return next((message for _key, message in question_problems(question)), None)


def fixed_health(state: SourceState, reason: str) -> Health:
    return Health(state, reason, time.time(), time.monotonic(), 0, 0, None)


@dataclass
class CameraSettings:
    """A camera's runtime switches and numbers; they outlive its pipeline (privacy restarts it)."""

    captions: bool
    motion: bool
    threshold: int
    contour_area: int


@dataclass
class MicrophoneSettings:
    """A microphone's runtime settings (kws on/off, per keyword on/off and cutoff)."""

    kws: bool
    keywords: dict[str, bool] = field(default_factory=dict)
    cutoffs: dict[str, float] = field(default_factory=dict)

    def apply(self, spotter: KeywordSpotter) -> None:
        for name in spotter.keywords:
            spotter.set_enabled(name, self.kws and self.keywords.get(name, True))
            if name in self.cutoffs:
                spotter.set_cutoff(name, self.cutoffs[name])


class CameraPipeline:
    """One camera: capture thread -> bounded frame queue -> analysis thread -> events and triggers."""

    def __init__(self, config: CameraConfig, publish: Publish, password: str | None, history: FrameHistory,
                 settings: CameraSettings, events: EventTracker, scheduler: Scheduler) -> None:
        self.config = config
        self.log = get_logger(camera=config.id)
        self._publish = publish
        self._events = events
        self._scheduler = scheduler
        self.analysis = FrameAnalysis(config)
        self.apply(settings)
        self.source = VideoSource(config, self._on_health, password)
        self.analyser = CameraAnalyser(config, self.source.frames, self.analysis.analyse, self._on_frame, history)

    def _on_health(self, health: Health) -> None:
        for event in health_events(self.config.id, "camera", health):
            self._publish(event)

    def _on_frame(self, frame: AnalysedFrame) -> None:
        with self._events.gate.passing(self.config.id, frame.ts) as allowed:
            if allowed:  # not a frame from before privacy went on (the analyser may still be finishing one)
                self._report_motion(frame)

    def _report_motion(self, frame: AnalysedFrame) -> None:
        result = self.analysis.last_motion
        if result is None:
            return
        if result.motion:
            self._scheduler.note_activity(self.config.id)
        if not result.changed:
            return
        self._publish(MotionState(self.config.id, result.active))
        if not result.active:
            self._events.motion_ended(self.config.id)
            return
        event_id = self._events.motion_started(self.config.id, frame, result.area)
        self._scheduler.trigger(self._scheduler.make_trigger(TriggerKind.MOTION, self.config.id, ts=frame.ts,
                                                             event_id=event_id))

    def apply(self, settings: CameraSettings) -> None:
        """The runtime motion switches and numbers (safe from any thread)."""
        motion = self.analysis.motion
        motion.set_enabled(settings.motion)
        motion.set_threshold(settings.threshold)
        motion.set_contour_area(settings.contour_area)

    def start(self) -> None:
        self.analyser.start()
        self.source.start()

    def signal_stop(self) -> None:
        """Ask the capture and analysis threads to end, without waiting (`join` waits)."""
        self.source.supervisor.stopping.set()  # the capture loop ends after its current read
        self.source.frames.close()  # and is released from a full lossless queue
        self.analyser.stop(timeout=0.0)

    def join(self, deadline: float) -> list[str]:
        """Wait for this camera's threads until `deadline` (monotonic); the names of those still running."""
        late = [] if self.source.stop(_left(deadline)) else [self.source.supervisor.name]
        if not self.analyser.stop(_left(deadline)):
            late.append(f"analyse-{self.config.id}")
        self._events.motion_ended(self.config.id)
        return late

    def alive(self) -> bool:
        return self.analyser.alive

    def stats(self) -> dict[str, Any]:
        return {**self.source.snapshot_stats(), **self.analyser.stats()}


class MicrophonePipeline:
    """One microphone: reader thread -> bounded chunk queue -> keyword spotting thread."""

    def __init__(self, config: MicrophoneConfig, publish: Publish, camera_url: str | None,
                 spotter: Callable[[AudioSource], KeywordSpotter]) -> None:
        self.config = config
        self._publish = publish
        self.source = AudioSource(config, self._on_health, camera_url)
        self.spotter = spotter(self.source)

    def _on_health(self, health: Health) -> None:
        for event in health_events(self.config.id, "microphone", health):
            self._publish(event)

    def start(self) -> None:
        self.spotter.start()
        self.source.start()

    def signal_stop(self) -> None:
        """Ask the reader thread to end, without waiting; the spotter ends on the closed chunk queue."""
        self.source.supervisor.stopping.set()
        self.source.chunks.close()

    def join(self, deadline: float) -> list[str]:
        """Wait for this microphone's threads until `deadline` (monotonic); the names of those still running."""
        late = [] if self.source.stop(_left(deadline)) else [self.source.supervisor.name]
        if not self.spotter.stop(_left(deadline)):
            late.append(f"kws-{self.config.id}")
        return late

    def alive(self) -> bool:
        return self.spotter.running

    def stats(self) -> dict[str, Any]:
        return {**self.source.snapshot_stats(), **self.spotter.stats()}


class Pipeline:
    """Every source of one config plus the scheduler and model worker, started and stopped together."""

    def __init__(self, config: Config, publish: Publish, secrets: Callable[[CameraConfig], str | None],
                 features: FeatureRegistry | None = None, captioner: Captioner | None = None,
                 record: Record | None = None) -> None:
        self.config = config
        self.log = get_logger(component="pipeline")
        self._publish = publish
        self._secrets = secrets
        self._features = features
        self.events = EventTracker(publish, {c.id: c.snapshot for c in config.cameras.values()})
        self.histories = {c.id: FrameHistory(int(c.history * c.analysis_fps) + 1)
                          for c in config.cameras.values() if c.enabled}
        self.worker = InferenceWorker(captioner) if captioner is not None else None
        self.scheduler = Scheduler(config, self.histories, self.worker, self.events, publish,
                                   FrameAnalysis.scene_distance, record=record)
        self.camera_settings = {c.id: CameraSettings(c.captions.enabled, c.motion.enabled, c.motion.threshold,
                                                     c.motion.contour_area) for c in config.cameras.values()}
        self.mic_settings = {m.id: MicrophoneSettings(m.keywords) for m in config.all_microphones}
        self.cameras: dict[str, CameraPipeline] = {}
        self.microphones: dict[str, MicrophonePipeline] = {}
        self._privacy: set[str] = set()
        self._lock = threading.RLock()

    # -- start and stop -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start every enabled source; if one fails to start, stop the ones already running and re-raise."""
        try:
            if self.worker is not None:
                self.worker.start()
            self.scheduler.start()
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

    def stop(self, timeout: float = STOP_TIMEOUT) -> list[str]:
        """Stop everything within `timeout` seconds in total (see the module doc); returns the names of the
        threads still running then (also logged). Open events are ended last."""
        deadline = time.monotonic() + timeout
        with self._lock:
            pipes: list[CameraPipeline | MicrophonePipeline] = [*reversed(self.microphones.values()),
                                                                 *reversed(self.cameras.values())]
            self.microphones.clear()
            self.cameras.clear()
            self.scheduler.request_stop()  # the model stops at its next token while the sources stop
            late = self._stop_pipes(pipes, deadline)
        if not self.scheduler.join(_left(deadline)):
            late.append("scheduler")
        if self.worker is not None:
            self.worker.stop(_left(deadline))
            if self.worker.alive:
                late.append("inference")
        self.events.close_all()
        if self._features is not None:
            for source in [*self.config.cameras, *(m.id for m in self.config.all_microphones)]:
                self._features.remove_source(source)
        if late:
            self.log.warning("pipeline_threads_not_stopped", threads=late, timeout_s=timeout)
        return late

    @staticmethod
    def _stop_pipes(pipes: list[CameraPipeline | MicrophonePipeline], deadline: float) -> list[str]:
        """Signal every pipe, then wait for all of them until one deadline; the threads still running."""
        for pipe in pipes:
            pipe.signal_stop()
        return [name for pipe in pipes for name in pipe.join(deadline)]

    def _start_camera(self, cam: CameraConfig) -> None:
        if not cam.enabled:
            self._report(cam.id, "camera", SourceState.DISABLED, "disabled in config")
            return
        pipe = CameraPipeline(cam, self._publish, self._secrets(cam), self.histories[cam.id],
                              self.camera_settings[cam.id], self.events, self.scheduler)
        self.cameras[cam.id] = pipe
        pipe.start()

    def _start_microphone(self, mic: MicrophoneConfig) -> None:
        camera = self.config.cameras.get(mic.camera) if mic.camera else None
        if not mic.enabled or (camera is not None and not camera.enabled):
            self._report(mic.id, "microphone", SourceState.DISABLED, "disabled in config")
            return
        if not mic.keywords:  # keyword spotting is all a microphone feeds: don't hold the device for nothing
            self._report(mic.id, "microphone", SourceState.DISABLED, "keyword spotting is off (keywords: false)")
            return
        url = self.cameras[camera.id].source.url if camera is not None and camera.id in self.cameras else None
        pipe = MicrophonePipeline(mic, self._publish, url, lambda source: self._make_spotter(mic, source))
        self.microphones[mic.id] = pipe
        pipe.start()

    def _make_spotter(self, mic: MicrophoneConfig, source: AudioSource) -> KeywordSpotter:
        spotter = KeywordSpotter(mic, self.config.models.wakeword, source.chunks, self._on_keyword)
        if self._features is not None and not any(f.source == mic.id for f in self._features.features()):
            self._register_mic_features(mic, spotter)
        self.mic_settings[mic.id].apply(spotter)
        return spotter

    def _report(self, source: str, kind: str, state: SourceState, reason: str) -> None:
        for event in health_events(source, kind, fixed_health(state, reason)):
            self._publish(event)

    # -- what sources tell the pipeline ---------------------------------------------------------------
    def _on_keyword(self, hit: KeywordDetected) -> None:
        """A keyword: publish it, open an event on the co-located camera, and ask that camera what it sees."""
        camera = hit.camera
        if camera is None:
            self._publish(hit)
            return
        with self.events.gate.passing(camera) as allowed:
            if allowed:  # not heard just before the camera (and so its microphone) went private
                self._publish(hit)
                if camera in self.histories:
                    self._ask_camera(camera, hit)

    def _ask_camera(self, camera: str, hit: KeywordDetected) -> None:
        heard_at = time.monotonic()
        event_id = self.events.open(camera, TriggerKind.KEYWORD, self.histories[camera].latest(), heard_at,
                                    keyword=hit.keyword)
        # The scheduler closes the event again when this camera takes no keyword captions (captions.on).
        self.scheduler.trigger(self.scheduler.make_trigger(TriggerKind.KEYWORD, camera, ts=heard_at,
                                                           event_id=event_id, keyword=hit.keyword))

    # -- runtime features -----------------------------------------------------------------------------
    def _register_camera_features(self, cam: CameraConfig) -> None:
        if self._features is None:
            return
        add, cid = self._features.add, cam.id
        add(Feature(cid, "captions", "switch", cam.captions.enabled, functools.partial(self._set_captions, cid)))
        add(Feature(cid, "motion", "switch", cam.motion.enabled, functools.partial(self._set_motion, cid)))
        add(Feature(cid, "motion_threshold", "number", float(cam.motion.threshold),
                    functools.partial(self._set_threshold, cid), 1, 255, 1))
        add(Feature(cid, "motion_contour_area", "number", float(cam.motion.contour_area),
                    functools.partial(self._set_contour_area, cid), 1, 1000, 1))
        on = add(Feature(cid, "privacy", "switch", cam.privacy, functools.partial(self._privacy_switch, cid)))
        self._register_watch_features(cam)
        if cid in self.histories:
            self.scheduler.set_captions(cid, self.camera_settings[cid].captions)
        if on:  # configured on (a restored value was applied above already)
            self.set_privacy(cid, True)

    def _register_watch_features(self, cam: CameraConfig) -> None:
        """Per watch a switch (`watch_<name>`) and its question as text (`question_<name>`), both restored
        from the feature store: a question edited over MQTT outlives a restart until the config's changes."""
        assert self._features is not None
        for name, watch in cam.watches.items():
            self._features.add(Feature(cam.id, f"watch_{name}", "switch", watch.enabled,
                                       functools.partial(self._set_watch, cam.id, name, "enabled")))
            self._features.add(Feature(cam.id, f"question_{name}", "text", watch.question,
                                       functools.partial(self._set_watch, cam.id, name, "question"),
                                       1, QUESTION_LIMIT, check=_question_problem))

    def _set_watch(self, camera: str, name: str, what: str, value: Value) -> None:
        if camera not in self.histories:  # a disabled camera has no scheduler state
            return
        if what == "enabled":
            self.scheduler.set_watch(camera, name, enabled=bool(value))
        else:
            self.scheduler.set_watch(camera, name, question=str(value))

    def _privacy_switch(self, camera: str, value: Value) -> None:
        self.set_privacy(camera, bool(value))

    def _set_captions(self, camera: str, value: Value) -> None:
        self.camera_settings[camera].captions = bool(value)
        if camera in self.histories:
            self.scheduler.set_captions(camera, bool(value))

    def _set_motion(self, camera: str, value: Value) -> None:
        self.camera_settings[camera].motion = bool(value)
        self._apply_camera(camera)

    def _set_threshold(self, camera: str, value: Value) -> None:
        self.camera_settings[camera].threshold = int(value)
        self._apply_camera(camera)

    def _set_contour_area(self, camera: str, value: Value) -> None:
        self.camera_settings[camera].contour_area = int(value)
        self._apply_camera(camera)

    def _apply_camera(self, camera: str) -> None:
        pipe = self.cameras.get(camera)
        if pipe is not None:
            pipe.apply(self.camera_settings[camera])

    def _register_mic_features(self, mic: MicrophoneConfig, spotter: KeywordSpotter) -> None:
        assert self._features is not None
        settings = self.mic_settings[mic.id]
        add = self._features.add
        add(Feature(mic.id, "kws", "switch", mic.keywords, functools.partial(self._set_kws, mic.id)))
        for keyword in spotter.keywords:
            cutoff = spotter.settings(keyword).cutoff
            settings.cutoffs.setdefault(keyword, cutoff)
            add(Feature(mic.id, f"kw_{keyword}", "switch", True, functools.partial(self._set_keyword, mic.id, keyword)))
            add(Feature(mic.id, f"cutoff_{keyword}", "number", round(cutoff, 3),
                        functools.partial(self._set_cutoff, mic.id, keyword), 0.01, 0.99, 0.01))

    def _set_kws(self, mic: str, value: Value) -> None:
        """Keyword spotting on this microphone, all keywords at once."""
        self.mic_settings[mic].kws = bool(value)
        self._apply_mic(mic)

    def _set_keyword(self, mic: str, keyword: str, value: Value) -> None:
        self.mic_settings[mic].keywords[keyword] = bool(value)
        self._apply_mic(mic)

    def _set_cutoff(self, mic: str, keyword: str, value: Value) -> None:
        self.mic_settings[mic].cutoffs[keyword] = float(value)
        self._apply_mic(mic)

    def _apply_mic(self, mic: str) -> None:
        pipe = self.microphones.get(mic)
        if pipe is not None:
            self.mic_settings[mic].apply(pipe.spotter)

    def keyword_names(self) -> dict[str, list[str]]:
        """The keywords each microphone spots (for Home Assistant's event entity)."""
        out = {}
        for mic in self.config.all_microphones:
            pipe = self.microphones.get(mic.id)
            if pipe is not None:
                out[mic.id] = list(pipe.spotter.keywords)
        return out

    # -- privacy -------------------------------------------------------------------------------------
    def set_privacy(self, camera: str, on: bool) -> None:
        """Privacy ON stops the camera and its microphones (devices released); OFF starts them again."""
        with self._lock:
            if on == (camera in self._privacy):
                return
            mics = [m for m in self.config.all_microphones if m.camera == camera]
            if on:
                self._privacy.add(camera)
                self.scheduler.set_privacy(camera, True)  # gate closed, its captions cancelled: before anything stops
                self._stop_private(camera, mics)
            else:
                self._privacy.discard(camera)
                self.scheduler.set_privacy(camera, False)
                self._start_camera(self.config.cameras[camera])
                for mic in mics:
                    self._start_microphone(mic)
            self.log.info("privacy_changed", camera=camera, privacy=on)

    def _stop_private(self, camera: str, mics: list[MicrophoneConfig]) -> None:
        """Stop the camera and its microphones together (devices released) and forget its frames."""
        pipes = [p for p in [*(self.microphones.pop(m.id, None) for m in mics), self.cameras.pop(camera, None)]
                 if p is not None]
        late = self._stop_pipes(pipes, time.monotonic() + PRIVACY_STOP_TIMEOUT)
        if late:
            self.log.warning("privacy_threads_not_stopped", camera=camera, threads=late,
                             timeout_s=PRIVACY_STOP_TIMEOUT)
        if camera in self.histories:
            self.histories[camera].clear()  # no frame from before privacy stays in memory
        for mic in mics:
            self._report(mic.id, "microphone", SourceState.PRIVACY, "privacy mode: nothing is captured")
        self._report(camera, "camera", SourceState.PRIVACY, "privacy mode: nothing is captured")

    def in_privacy(self, camera: str) -> bool:
        return camera in self._privacy

    # -- watchdog and stats ----------------------------------------------------------------------------
    def _pipes(self) -> list[CameraPipeline | MicrophonePipeline]:
        """Every running camera and microphone (call under the lock)."""
        return [*self.cameras.values(), *self.microphones.values()]

    def check_stalls(self) -> None:
        with self._lock:
            sources = [p.source.supervisor for p in self._pipes()]
        for supervisor in sources:
            supervisor.check_stall()

    def healthy(self) -> bool:
        """All processing threads alive (sources may be reconnecting: that is handled, not unhealthy)."""
        with self._lock:
            pipes_ok = all(p.alive() for p in self._pipes())
        worker_ok = self.worker is None or self.worker.alive
        return pipes_ok and worker_ok and self.scheduler.alive

    def stats(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            out: dict[str, dict[str, Any]] = {cid: {**cam.stats(), **self.scheduler.camera_stats(cid)}
                                              for cid, cam in self.cameras.items()}
            out.update({mid: mic.stats() for mid, mic in self.microphones.items()})
            for cam in self._privacy:  # under the lock: set_privacy changes the set
                out[cam] = {"kind": "camera", "state": SourceState.PRIVACY.value}
        return out
