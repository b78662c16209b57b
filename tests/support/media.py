"""Test media made with real FFmpeg: H.264 clips (with an audio track) and WAV files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def ffmpeg(*args: str) -> None:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("ffmpeg is not installed: run ./script/test (it installs it) or apt-get install ffmpeg")
    subprocess.run([exe, "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def make_clip(path: Path, seconds: float = 4.0, size: str = "640x360", fps: int = 30, audio: bool = True) -> Path:
    """A moving test pattern in H.264 (yuv420p), with a 440 Hz tone as AAC when `audio`."""
    inputs = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}"]
    if audio:
        inputs += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    codecs = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", str(fps)]
    if audio:
        codecs += ["-c:a", "aac", "-ac", "2"]
    ffmpeg(*inputs, "-t", str(seconds), *codecs, str(path))
    return path


def make_tone_wav(path: Path, seconds: float = 1.0, rate: int = 16000, channels: int = 1, codec: str = "pcm_s16le",
                  freq: int = 440) -> Path:
    """A sine tone as WAV in any PCM/float `codec` (pcm_u8, pcm_s24le, pcm_f32le, ...)."""
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate={rate}", "-t", str(seconds),
           "-ac", str(channels), "-c:a", codec, str(path))
    return path
