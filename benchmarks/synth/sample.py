"""The bundled sample: a porch camera clip with motion at known times and an audio track with
spoken wake words at known times, plus the ground truth of both (`samples/porch.json`).

`python -m benchmarks synth sample --out samples` writes it; the quick start plays it through the daemon.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.synth import speech
from benchmarks.synth.motion_clips import write_clip
from edged.sources.audio.chunk import SAMPLE_RATE
from edged.sources.audio.convert import to_int16
from edged.sources.audio.wav import write_wav


@dataclass(frozen=True)
class Line:
    """Something said on the sample's audio track."""

    at: float  # seconds into the clip
    text: str
    keyword: str | None  # the wake word it is, if any
    voice: speech.Voice


# Voices chosen so the shipped microWakeWord models hear each keyword with a margin
# (okay_nabu ~0.92, alexa ~0.99, hey_jarvis ~0.98 at their cutoffs 0.85, 0.9, 0.97).
SCRIPT = (
    Line(2.5, "okay nabu", "okay_nabu", speech.Voice("espeak-ng", "en-us", 1.0)),
    Line(8.0, "There is someone walking past the house.", None, speech.Voice("espeak-ng", "en", 1.0)),
    Line(13.0, "alexa", "alexa", speech.Voice("espeak-ng", "en-us+m3", 0.9)),
    Line(18.5, "hey jarvis", "hey_jarvis", speech.Voice("flite", "kal16", 1.0)),
    Line(25.5, "The porch light came on just now.", None, speech.Voice("espeak-ng", "en-us", 1.0)),
)
DURATION = 30.0


def audio_track(seed: int = 3) -> tuple[np.ndarray, list[dict[str, object]]]:
    """The spoken script over quiet street noise (16 kHz mono int16) and when each line is said."""
    rng = np.random.default_rng(seed)
    track = speech.noise("pink", DURATION, rng) * 10 ** (-42 / 20)
    spoken = []
    for line in SCRIPT:
        voice = speech.trim(speech.to_float(line.voice.speak(line.text)))
        start = round(line.at * SAMPLE_RATE)
        track = speech.overlay(track, speech.normalize(voice, -6.0), start)
        spoken.append({"start": line.at, "end": round(line.at + len(voice) / SAMPLE_RATE, 3), "text": line.text,
                       "keyword": line.keyword, "voice": line.voice.label})
    return to_int16(track), spoken


def write_sample(out: Path, name: str = "porch") -> Path:
    """Write `<out>/<name>.mp4` (H.264 + AAC) and `<out>/<name>.json`; returns the video path."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("the sample needs ffmpeg (apt-get install ffmpeg)")
    out.mkdir(parents=True, exist_ok=True)
    video = out / f"{name}.mp4"
    with tempfile.TemporaryDirectory(prefix="edged-sample-") as tmp:
        silent = Path(tmp) / "video.mp4"
        truth = write_clip(silent, "sample", width=640, height=360, fps=10.0, crf=28, duration=DURATION)
        samples, spoken = audio_track()
        wav = write_wav(Path(tmp) / "audio.wav", samples)
        subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(silent), "-i", str(wav),
                        "-c:v", "copy", "-c:a", "aac", "-b:a", "64k", "-shortest", "-movflags", "+faststart",
                        str(video)], check=True)
    ground_truth = {"video": video.name, "duration": DURATION, "description": truth.description,
                    "motion": [list(iv) for iv in truth.motion], "events": [list(e) for e in truth.events],
                    "speech": spoken,
                    "keywords": [{"keyword": s["keyword"], "start": s["start"], "end": s["end"]}
                                 for s in spoken if s["keyword"]]}
    (out / f"{name}.json").write_text(json.dumps(ground_truth, indent=1) + "\n")
    return video
