"""Reading audio files for `edged kws` and the evaluation: anything in, 16 kHz mono int16 out.

WAV files are parsed here (PCM 8/16/24/32-bit, float 32/64-bit, WAVE_FORMAT_EXTENSIBLE); other
containers (FLAC, MP3, Ogg, a video's audio track) are decoded by ffmpeg when it is installed.
Every conversion is reported back (`Audio.conversions`) so the CLI can say what it did; what cannot
be converted sensibly is refused with an `AudioFormatError` that says why.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edged.analysis.kws.errors import AudioFormatError
from edged.sources.audio.chunk import SAMPLE_RATE, AudioChunk

MIN_RATE = 8000  # below this there is no speech band left to spot keywords in
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


@dataclass(frozen=True)
class Audio:
    """Decoded audio: 16 kHz mono int16 samples and what was done to get them."""

    samples: np.ndarray
    conversions: tuple[str, ...] = ()

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def read_audio(path: str | Path) -> Audio:
    """Decode `path` to 16 kHz mono int16 (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise AudioFormatError(f"{path}: no such file")
    with path.open("rb") as f:
        head = f.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return _read_wav(path)
    return _read_with_ffmpeg(path)


def _read_wav(path: Path) -> Audio:
    data = path.read_bytes()
    fmt: tuple[int, int, int, int] | None = None
    pcm: bytes | None = None
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            if len(body) < 16:
                raise AudioFormatError(f"{path}: WAV fmt chunk is truncated")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack_from("<H", body, 24)[0]  # first two bytes of the sub-format GUID
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            pcm = body
        pos += 8 + size + (size & 1)
    if fmt is None or pcm is None:
        raise AudioFormatError(f"{path}: WAV file without a fmt or data chunk (truncated?)")
    tag, channels, rate, bits = fmt
    return convert(_decode(path, pcm, tag, bits, channels), rate, f"{path}")


def _decode(path: Path, pcm: bytes, tag: int, bits: int, channels: int) -> np.ndarray:
    """Interleaved frames -> float32 array (frames, channels) in [-1, 1]."""
    if channels < 1:
        raise AudioFormatError(f"{path}: WAV header says {channels} channels")
    width = bits // 8
    usable = len(pcm) - len(pcm) % (width * channels) if width else 0
    raw = pcm[:usable]
    if tag == _FLOAT and bits in (32, 64):
        x = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8").astype(np.float32)
    elif tag == _PCM and bits == 8:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif tag == _PCM and bits == 16:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif tag == _PCM and bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
    elif tag == _PCM and bits == 32:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float32) / float(1 << 31)
    else:
        kind = {_PCM: "PCM", _FLOAT: "float"}.get(tag, f"format tag {tag:#x}")
        raise AudioFormatError(f"{path}: unsupported WAV encoding ({kind}, {bits}-bit); "
                               "use PCM 8/16/24/32-bit or float 32/64-bit")
    return x.reshape(-1, channels)


def convert(frames: np.ndarray, rate: int, name: str) -> Audio:
    """float (frames, channels) at `rate` -> 16 kHz mono int16, noting each conversion."""
    notes = []
    if rate < MIN_RATE:
        raise AudioFormatError(f"{name}: sample rate {rate} Hz is too low for keyword spotting "
                               f"(need >= {MIN_RATE} Hz; models expect {SAMPLE_RATE} Hz)")
    if frames.shape[1] > 1:
        notes.append(f"{frames.shape[1]} channels mixed to mono")
    mono = frames.mean(axis=1) if frames.shape[1] > 1 else frames[:, 0]
    if rate != SAMPLE_RATE:
        notes.append(f"resampled from {rate} Hz to {SAMPLE_RATE} Hz")
        if rate < SAMPLE_RATE:
            notes.append("audio below 16 kHz lacks the upper speech band: expect lower scores")
        mono = resample(mono, rate, SAMPLE_RATE)
    peak = float(np.max(np.abs(mono))) if len(mono) else 0.0
    if peak > 1.0:
        notes.append(f"clipped (peak {peak:.2f} of full scale)")
    samples = np.clip(np.round(mono * 32768.0), -32768, 32767).astype(np.int16)
    return Audio(samples, tuple(notes))


def resample(x: np.ndarray, src: int, dst: int, zero_crossings: int = 16) -> np.ndarray:
    """Band-limited resampling by windowed-sinc interpolation (Kaiser window), in blocks."""
    if src == dst or len(x) == 0:
        return x.astype(np.float32)
    ratio = dst / src
    cutoff = min(1.0, ratio) * 0.95  # of the source Nyquist frequency
    half = int(np.ceil(zero_crossings / cutoff))
    zeros = np.zeros(half + 1, np.float32)
    padded = np.concatenate((zeros[:half], x.astype(np.float32), zeros))
    n_out = int(np.floor(len(x) * ratio))
    out = np.empty(n_out, dtype=np.float32)
    taps = np.arange(-half + 1, half + 1)
    beta = 8.0
    block = 4096
    for start in range(0, n_out, block):
        t = np.arange(start, min(n_out, start + block)) / ratio  # positions in source samples
        base = np.floor(t).astype(np.int64)
        idx = base[:, None] + taps[None, :]
        d = t[:, None] - idx
        window = np.kaiser(2 * half + 1, beta)  # symmetric; sampled at the fractional offsets below
        w = np.interp(d, np.linspace(-half, half, len(window)), window, left=0.0, right=0.0)
        kernel = cutoff * np.sinc(cutoff * d) * w
        out[start:start + len(t)] = np.sum(padded[idx + half] * kernel, axis=1)
    return out


def _read_with_ffmpeg(path: Path) -> Audio:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioFormatError(f"{path}: not a WAV file, and ffmpeg (which decodes other formats) is not "
                               "installed; install ffmpeg or convert to WAV")
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-v", "info", "-i", str(path), "-vn", "-ac", "1",
           "-ar", str(SAMPLE_RATE), "-f", "s16le", "-acodec", "pcm_s16le", "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    log = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        reason = [line for line in log.strip().splitlines() if line.strip()]
        raise AudioFormatError(f"{path}: ffmpeg cannot decode it ({reason[-1] if reason else 'no audio'})")
    samples = np.frombuffer(proc.stdout, dtype="<i2").astype(np.int16)
    if len(samples) == 0:
        raise AudioFormatError(f"{path}: no audio stream")
    return Audio(samples, _ffmpeg_conversions(log))


def _ffmpeg_conversions(log: str) -> tuple[str, ...]:
    """What ffmpeg changed, read from the input stream it describes (`Audio: flac, 44100 Hz, stereo, s16`)."""
    match = re.search(r"Stream #0:\d+.*?: Audio: ([^,\n]+), (\d+) Hz, ([^,\n]+), ([^,\n]+)", log)
    if match is None:
        return ("decoded by ffmpeg to 16 kHz mono",)
    codec, rate, layout, fmt = match.group(1).split()[0], int(match.group(2)), match.group(3), match.group(4)
    notes = []
    if layout.strip() != "mono":
        notes.append(f"{layout.strip()} mixed to mono")
    if rate != SAMPLE_RATE:
        notes.append(f"resampled from {rate} Hz to {SAMPLE_RATE} Hz")
    if notes or not fmt.strip().startswith("s16"):
        notes.insert(0, f"decoded from {codec} ({fmt.strip()}) by ffmpeg")
    return tuple(notes)


def iter_chunks(samples: np.ndarray, chunk_samples: int, mic: str = "file",
                start_seq: int = 0) -> Iterator[AudioChunk]:
    """`samples` cut into the daemon's chunks (the last one may be short), stamped with stream time."""
    if chunk_samples < 1:
        raise ValueError(f"chunk size must be >= 1 sample (got {chunk_samples})")
    for seq, start in enumerate(range(0, len(samples), chunk_samples), start_seq):
        piece = samples[start:start + chunk_samples]
        end = start + len(piece)
        yield AudioChunk(mic, seq, piece, end / SAMPLE_RATE, 0.0, 0.0)
