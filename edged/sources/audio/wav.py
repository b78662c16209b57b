"""A small RIFF/WAVE reader: PCM 8/16/24/32-bit and float 32/64, plain or WAVE_FORMAT_EXTENSIBLE; and
`write_wav` for what edged records (16 kHz mono int16).

The standard library's `wave` refuses float and extensible files, which recorders and sound
editors write all the time; this reader takes them and names what is wrong when it can't.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edged.sources.audio.chunk import SAMPLE_RATE
from edged.sources.audio.convert import SampleFormat, to_int16

_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


class WavError(ValueError):
    """A WAV file that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class WavInfo:
    """What the header says."""

    sample_rate: int
    channels: int
    fmt: SampleFormat
    data_offset: int
    data_bytes: int

    @property
    def frame_bytes(self) -> int:
        return self.channels * {"u8": 1, "s16": 2, "s24": 3, "s32": 4, "f32": 4, "f64": 8}[self.fmt]

    @property
    def duration(self) -> float:
        return self.data_bytes / self.frame_bytes / self.sample_rate


def read_header(f: BinaryIO, name: str) -> WavInfo:
    """Parse the header of an open WAV file, leaving the file positioned at the sample data."""
    riff = f.read(12)
    if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        raise WavError(f"{name}: not a RIFF/WAVE file")
    fmt_chunk: bytes | None = None
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise WavError(f"{name}: no data chunk" if fmt_chunk else f"{name}: no fmt chunk")
        cid, size = head[:4], struct.unpack("<I", head[4:])[0]
        if cid == b"fmt ":
            fmt_chunk = f.read(size + (size & 1))
        elif cid == b"data":
            if fmt_chunk is None:
                raise WavError(f"{name}: data chunk before fmt chunk")
            rate, channels, fmt = _parse_fmt(fmt_chunk, name)
            offset = f.tell()
            if size in (0, 0xFFFFFFFF):  # streaming writers leave the size open
                size = _remaining(f, offset)
            return WavInfo(rate, channels, fmt, offset, size)
        else:
            f.seek(size + (size & 1), 1)


def _parse_fmt(chunk: bytes, name: str) -> tuple[int, int, SampleFormat]:
    if len(chunk) < 16:
        raise WavError(f"{name}: fmt chunk too short")
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", chunk[:16])
    if tag == _EXTENSIBLE and len(chunk) >= 26:
        tag = struct.unpack("<H", chunk[24:26])[0]  # first two bytes of the sub-format GUID
    if channels < 1 or rate < 1:
        raise WavError(f"{name}: header says {channels} channels at {rate} Hz")
    formats: dict[tuple[int, int], SampleFormat] = {
        (_PCM, 8): "u8", (_PCM, 16): "s16", (_PCM, 24): "s24", (_PCM, 32): "s32", (_FLOAT, 32): "f32",
        (_FLOAT, 64): "f64",
    }
    fmt = formats.get((tag, bits))
    if fmt is None:
        kind = {_PCM: "PCM", _FLOAT: "float"}.get(tag, f"format tag {tag:#x}")
        raise WavError(f"{name}: {bits}-bit {kind} audio is not supported (PCM 8/16/24/32-bit or float 32/64)")
    return rate, channels, fmt


def _remaining(f: BinaryIO, offset: int) -> int:
    end = f.seek(0, 2)
    f.seek(offset)
    return end - offset


def open_wav(path: str | Path) -> tuple[BinaryIO, WavInfo]:
    """Open a WAV file for streaming; returns the file (at the data) and its header."""
    f = open(path, "rb")  # noqa: SIM115 - the caller owns and closes it
    try:
        return f, read_header(f, str(path))
    except Exception:
        f.close()
        raise


def write_wav(path: str | Path, samples: np.ndarray) -> Path:
    """Write 16 kHz mono int16 `samples` (or float in [-1, 1], converted) as a WAV file."""
    import wave

    data = samples if samples.dtype == np.int16 else to_int16(samples)
    path = Path(path)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(data.astype("<i2").tobytes())
    return path
