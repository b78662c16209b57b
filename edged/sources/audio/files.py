"""Whole recordings as 16 kHz mono int16, read by the daemon's own readers (WAV natively, everything
else through ffmpeg), so `edged kws` hears a file exactly as a microphone on that file would."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edged.sources.audio.chunk import SAMPLE_RATE, AudioChunk
from edged.sources.audio.convert import to_int16
from edged.sources.audio.readers import AudioError, AudioReader, FfmpegReader, WavReader
from edged.sources.audio.wav import WavInfo
from edged.supervise import SourceEnded


@dataclass(frozen=True)
class Recording:
    """A decoded recording and what was done to get it to 16 kHz mono int16."""

    samples: np.ndarray
    conversions: tuple[str, ...] = ()

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def read_recording(path: str | Path) -> Recording:
    """Decode `path` whole; raises `AudioError` naming the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    with path.open("rb") as f:
        head = f.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        wav = WavReader(str(path))
        return _drain(wav, path, _wav_conversions(wav.info))
    return _drain(FfmpegReader(str(path), loop=False, shown=str(path)), path, _probe_conversions(path))


def _drain(reader: AudioReader, path: Path, conversions: tuple[str, ...]) -> Recording:
    blocks: list[np.ndarray] = []
    try:
        while True:
            blocks.append(reader.read(1.0))
    except SourceEnded:
        pass
    finally:
        reader.close()
    mono = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if len(mono) == 0:
        raise AudioError(f"{path}: no audio in it")
    peak = float(np.max(np.abs(mono)))
    if peak > 1.0:
        conversions += (f"clipped (peak {peak:.2f} of full scale)",)
    return Recording(to_int16(mono), conversions)


def _wav_conversions(info: WavInfo) -> tuple[str, ...]:
    notes = []
    if info.channels > 1:
        notes.append(f"{info.channels} channels mixed to mono")
    if info.sample_rate != SAMPLE_RATE:
        notes.append(f"resampled from {info.sample_rate} Hz to {SAMPLE_RATE} Hz")
        if info.sample_rate < SAMPLE_RATE:
            notes.append("audio below 16 kHz lacks the upper speech band: expect lower scores")
    return tuple(notes)


def _probe_conversions(path: Path) -> tuple[str, ...]:
    """What ffmpeg will change, from ffprobe's view of the first audio stream (its metadata only)."""
    exe = shutil.which("ffprobe")
    if exe is None:
        return ("decoded by ffmpeg to 16 kHz mono",)
    cmd = [exe, "-v", "error", "-select_streams", "a:0", "-show_entries",
           "stream=codec_name,sample_rate,channels,sample_fmt", "-of", "json", str(path)]
    probe = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
    try:
        stream = json.loads(probe.stdout)["streams"][0]
        codec, fmt = str(stream["codec_name"]), str(stream["sample_fmt"])
        rate, channels = int(stream["sample_rate"]), int(stream["channels"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ("decoded by ffmpeg to 16 kHz mono",)
    notes = []
    if channels > 1:
        notes.append(f"{channels} channels mixed to mono")
    if rate != SAMPLE_RATE:
        notes.append(f"resampled from {rate} Hz to {SAMPLE_RATE} Hz")
    if notes or not fmt.startswith("s16"):
        notes.insert(0, f"decoded from {codec} ({fmt}) by ffmpeg")
    return tuple(notes)


def iter_chunks(samples: np.ndarray, chunk_samples: int, mic: str = "file",
                start_seq: int = 0) -> Iterator[AudioChunk]:
    """`samples` cut into the daemon's chunks (the last one may be short), stamped with stream time."""
    if chunk_samples < 1:
        raise ValueError(f"chunk size must be >= 1 sample (got {chunk_samples})")
    for seq, start in enumerate(range(0, len(samples), chunk_samples), start_seq):
        piece = samples[start:start + chunk_samples]
        yield AudioChunk(mic, seq, piece, (start + len(piece)) / SAMPLE_RATE, 0.0, 0.0)
