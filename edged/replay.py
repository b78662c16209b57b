"""Replay: the whole pipeline on recorded media, printing what it would publish, plus a summary.

The media go through the daemon's own sources, analysis, keyword spotting, scheduler and model at
their recorded pace (so every latency is the one a live camera would see); only the MQTT broker is
replaced by a recorder. Used by `edged replay` and `python -m benchmarks pipeline`.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from edged.config.schema import CameraConfig, Config, MicrophoneConfig
from edged.events import CameraEvent, Caption, CaptionUnchanged, Event, KeywordDetected, MotionState
from edged.inference.protocol import Captioner
from edged.metrics import Percentiles
from edged.pipeline import Pipeline
from edged.supervise import SourceState


def has_audio_track(path: str) -> bool:
    """Whether ffprobe finds an audio stream in a media file."""
    exe = shutil.which("ffprobe")
    if exe is None:
        return False
    out = subprocess.run([exe, "-v", "error", "-select_streams", "a", "-show_entries", "stream=index", "-of", "csv=p=0",
                          path], capture_output=True, text=True, check=False)
    return bool(out.stdout.strip())


def replay_config(base: Config, video: str, audio: str | None, camera: str | None, realtime: bool = True) -> Config:
    """`base` with one camera reading `video` once (and a microphone on `audio`, or on the video's own track)."""
    template = base.cameras[camera] if camera else next(iter(base.cameras.values()), None)
    cam_id = template.id if template is not None else "replay"
    cam = dataclasses.replace(template, url=video, loop=False, realtime=realtime, enabled=True, privacy=False) \
        if template is not None else CameraConfig(id=cam_id, url=video, realtime=realtime)
    device = audio if audio is not None else ("camera" if has_audio_track(video) else None)
    mic = None if device is None else MicrophoneConfig(id=f"{cam_id}_mic", device=device, camera=cam_id,
                                                         realtime=realtime)
    cam = dataclasses.replace(cam, microphone=mic)
    return dataclasses.replace(base, cameras=MappingProxyType({cam_id: cam}), microphones=MappingProxyType({}))


@dataclass
class Recorder:
    """Stands in for the broker: keeps every event, optionally printing each as it comes."""

    echo: Callable[[Event], None] | None = None
    events: list[Event] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)
        if self.echo is not None:
            self.echo(event)

    def of(self, kind: type) -> list[Any]:
        with self.lock:
            return [e for e in self.events if isinstance(e, kind)]


def run_replay(config: Config, captioner: Captioner | None, recorder: Recorder, timeout: float = 3600.0,
               linger: float = 1.0) -> dict[str, Any]:
    """Run the pipeline until the media end and the scheduler is idle; returns the summary."""
    pipeline = Pipeline(config, recorder, lambda cam: None, None, captioner)
    started = time.monotonic()
    pipeline.start()
    try:
        _wait_until_done(pipeline, started + timeout, linger)
    finally:
        media_s = max((p.source.file_position or 0.0 for p in pipeline.cameras.values()), default=0.0)
        summary = summarise(pipeline, recorder, time.monotonic() - started, media_s)
        pipeline.stop()
    return summary


def _wait_until_done(pipeline: Pipeline, deadline: float, linger: float) -> None:
    finished = ("ended", "stopped")
    while time.monotonic() < deadline:
        cams_done = all(p.source.supervisor.health().state.value in finished for p in pipeline.cameras.values())
        mics_done = all(p.source.supervisor.health().state.value in finished or
                        p.source.supervisor.health().state is SourceState.RECONNECTING
                        for p in pipeline.microphones.values())
        stats = pipeline.scheduler.stats()
        if cams_done and mics_done and not stats["pending"] and not stats["running"]:
            time.sleep(linger)  # the last frames' analysis and keyword chunks drain
            if not pipeline.scheduler.stats()["pending"] and not pipeline.scheduler.stats()["running"]:
                return
        time.sleep(0.1)


def summarise(pipeline: Pipeline, recorder: Recorder, wall_s: float, media_s: float) -> dict[str, Any]:
    """The replay's figures: what was published and how fast."""
    sched = pipeline.scheduler.stats()
    captions = recorder.of(Caption)
    caption_latency = Percentiles.merged(list(pipeline.scheduler.latency_ms.values()))
    hours = max(media_s, 1e-9) / 3600
    events = recorder.of(CameraEvent)
    return {
        "media_s": round(media_s, 2), "wall_s": round(wall_s, 2), "model": pipeline.scheduler.model_name,
        "captions": len(captions), "captions_per_hour": round(len(captions) / hours, 1) if media_s else 0.0,
        "captions_by_trigger": sched["by_trigger"],
        "events": {t: sum(e.type == t for e in events) for t in ("new", "update", "end")},
        "motion_on": sum(1 for e in recorder.of(MotionState) if e.active),
        "keywords": [(e.keyword, round(e.stream_time, 2)) for e in recorder.of(KeywordDetected)],
        "trigger_to_event_ms": pipeline.events.new_latency_ms.summary(),
        "trigger_to_caption_ms": caption_latency.summary(),
        "stale_dropped": sched["stale_dropped"], "preemptions": sched["preemptions"],
        "coalesced": sched["coalesced"],
        "duplicates_avoided": sched["unchanged_scene"] + sched["unchanged_text"],
        "heartbeats": len(recorder.of(CaptionUnchanged)),
        "sources": pipeline.stats(),
    }
