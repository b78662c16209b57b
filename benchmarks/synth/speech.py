"""Synthetic speech for tests, sample media and the keyword evaluation: Debian's TTS engines plus a mixer.

`speak(text, engine, voice, speed, pitch)` returns 16 kHz mono int16 from espeak-ng, flite or
festival (run as subprocesses; `available_engines()` says which are installed), or from two engines
of Debian's non-free section that only the keyword verifiers' third held-out set speaks with
(`NONFREE_ENGINES`: MBROLA's diphone voices driven by espeak-ng, and SVOX Pico). `speed` and
`pitch` are factors of the voice's own (1.0 = as the engine speaks): espeak-ng, MBROLA, Pico and
flite shift the pitch natively, festival's diphone voices through their intonation targets (its
HTS voice, slt, ignores both factors). The rest composes scenes in float32 (full scale = 1.0):
silence, concatenation, overlay at a position, noise at a signal-to-noise ratio, synthetic room
reverb. Everything random takes a
`numpy.random.Generator`, so a seed reproduces a scene exactly (for a given engine version).
"""

from __future__ import annotations

import html
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edged.sources.audio.chunk import SAMPLE_RATE
from edged.sources.audio.convert import to_int16
from edged.sources.audio.files import read_recording

ENGINES = ("espeak-ng", "flite", "festival")
# Non-free (Debian packages mbrola-us1, mbrola-us2, mbrola-us3, mbrola-en1, libttspico-utils): two
# more engines for a held-out keyword set (`kws-verifier`'s held3); nothing else, and no test, needs them.
NONFREE_ENGINES = ("mbrola", "pico")
_BINARIES = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "festival", "mbrola": "mbrola",
             "pico": "pico2wave"}
_PACKAGES = {"mbrola": "mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1", "pico": "libttspico-utils"}

# English voices of the Debian packages (festival's need festvox-kallpc16k, festvox-kdlpc16k and
# festvox-us-slt-hts). espeak-ng "+variant" voices change timbre and pitch range.
VOICES: dict[str, tuple[str, ...]] = {
    "espeak-ng": ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan",
                  "en-us+f3", "en-us+m3", "en-gb+f2", "en-us+klatt", "en-gb-x-gbcwmd+m5", "en-us-nyc"),
    "flite": ("kal16", "slt", "rms", "awb", "kal"),
    "festival": ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts"),
    "mbrola": ("us1", "us2", "us3", "en1"),
    "pico": ("en-US", "en-GB"),
}
DEFAULT_VOICE = {"espeak-ng": "en-us", "flite": "slt", "festival": "kal_diphone", "mbrola": "us1", "pico": "en-US"}

# Mean F0 (Hz) the flite and festival diphone voices aim for by default; `pitch` scales it.
_F0 = {"kal16": 105.0, "kal": 105.0, "slt": 165.0, "rms": 100.0, "awb": 115.0,
       "kal_diphone": 105.0, "ked_diphone": 105.0}


class SpeechError(RuntimeError):
    """A TTS engine is missing or failed; the message says which and how."""


@dataclass(frozen=True)
class Voice:
    """One way of speaking: engine, voice and the speed and pitch factors."""

    engine: str = "espeak-ng"
    voice: str = "en-us"
    speed: float = 1.0
    pitch: float = 1.0

    def speak(self, text: str) -> np.ndarray:
        return speak(text, self.engine, self.voice, self.speed, self.pitch)

    @property
    def label(self) -> str:
        return f"{self.engine}:{self.voice}:s{self.speed:g}:p{self.pitch:g}"


def available_engines(engines: tuple[str, ...] = ENGINES) -> list[str]:
    """Those of `engines` installed on this machine."""
    return [e for e in engines if shutil.which(_BINARIES[e])]


def install_hint(engine: str) -> str:
    return f"Debian package {_PACKAGES.get(engine, _BINARIES[engine])}"


def speak(text: str, engine: str = "espeak-ng", voice: str | None = None, speed: float = 1.0,
          pitch: float = 1.0) -> np.ndarray:
    """`text` spoken by `engine`'s `voice`, as 16 kHz mono int16 (leading/trailing silence kept)."""
    if engine not in _BINARIES:
        raise SpeechError(f"unknown TTS engine {engine!r} (engines: {', '.join(_BINARIES)})")
    if shutil.which(_BINARIES[engine]) is None:
        raise SpeechError(f"TTS engine {engine} is not installed ({install_hint(engine)})")
    if not (0.3 <= speed <= 3.0 and 0.5 <= pitch <= 2.0):
        raise SpeechError(f"speed must be in 0.3..3 and pitch in 0.5..2 (got {speed:g}, {pitch:g})")
    name = voice or DEFAULT_VOICE[engine]
    with tempfile.TemporaryDirectory(prefix="edged-tts-") as tmp:
        out = Path(tmp) / "speech.wav"
        cmd, stdin = _command(engine, name, text, (speed, pitch), out)
        proc = subprocess.run(cmd, input=stdin, capture_output=True, check=False, timeout=120)
        if proc.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
            err = proc.stderr.decode(errors="replace").strip()
            raise SpeechError(f"{engine} voice {name} failed on {text[:40]!r}: {err or 'no audio written'}")
        return read_recording(out).samples


def _command(engine: str, voice: str, text: str, prosody: tuple[float, float],
             out: Path) -> tuple[list[str], bytes | None]:
    speed, pitch = prosody
    if engine in ("espeak-ng", "mbrola"):
        wpm = max(80, min(450, round(175 * speed)))
        p = max(0, min(99, round(50 * pitch)))
        name = f"mb-{voice}" if engine == "mbrola" else voice
        return ["espeak-ng", "-v", name, "-s", str(wpm), "-p", str(p), "-w", str(out), "--", text], None
    if engine == "pico":  # no switches for prosody: SSML tags, in percent of the voice's own
        body = html.escape(text, quote=False)
        ssml = f"<speed level='{round(100 * speed)}'><pitch level='{round(100 * pitch)}'>{body}</pitch></speed>"
        return ["pico2wave", "-l", voice, "-w", str(out), ssml], None
    if engine == "flite":
        cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={1.0 / speed:.3f}"]
        if pitch != 1.0 and voice in _F0:
            cmd += ["--setf", f"int_f0_target_mean={_F0[voice] * pitch:.1f}"]
        return [*cmd, "-t", text, "-o", str(out)], None
    quoted = text.replace("\\", " ").replace('"', " ")
    script = [f"(voice_{voice})", f"(Parameter.set 'Duration_Stretch {1.0 / speed:.3f})"]
    if pitch != 1.0 and voice in _F0:
        f0 = _F0[voice] * pitch
        script.append(f"(set! int_lr_params '((target_f0_mean {f0:.1f}) (target_f0_std {f0 * 0.12:.1f}) "
                      "(model_f0_mean 170) (model_f0_std 34)))")
    script.append(f'(utt.save.wave (SynthText "{quoted}") "{out}" \'riff)')
    return ["festival", "--pipe"], "\n".join(script).encode()


# -- composition (float32, full scale 1.0) ---------------------------------------------------------------

def _f32(x: Any) -> np.ndarray:
    out: np.ndarray = np.asarray(x, dtype=np.float32)
    return out


def to_float(samples: np.ndarray) -> np.ndarray:
    return samples.astype(np.float32) / 32768.0


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)


def active_span(x: np.ndarray, threshold_db: float = -45.0, frame: int = 160) -> tuple[int, int]:
    """First and last sample (end exclusive) of the frames louder than `threshold_db` below the peak."""
    if len(x) == 0:
        return 0, 0
    n = len(x) // frame
    if n == 0:
        return 0, len(x)
    rms = np.sqrt(np.mean(x[:n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1)) + 1e-12
    loud = np.nonzero(20 * np.log10(rms / rms.max()) > threshold_db)[0]
    if len(loud) == 0:
        return 0, 0
    return int(loud[0] * frame), int(min(len(x), (loud[-1] + 1) * frame))


def trim(x: np.ndarray, threshold_db: float = -45.0) -> np.ndarray:
    """`x` without its leading and trailing silence."""
    start, end = active_span(x, threshold_db)
    return x[start:end]


def normalize(x: np.ndarray, peak_db: float = -3.0) -> np.ndarray:
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    return x if peak == 0 else (x * (10 ** (peak_db / 20) / peak)).astype(np.float32)


def overlay(base: np.ndarray, sound: np.ndarray, at: int, gain_db: float = 0.0) -> np.ndarray:
    """`base` with `sound` added from sample `at` (extended with silence if it runs past the end)."""
    end = at + len(sound)
    out = base if len(base) >= end else np.concatenate((base, np.zeros(end - len(base), np.float32)))
    out = out.copy()
    out[at:end] += sound * np.float32(10 ** (gain_db / 20))
    return _f32(out)


def power(x: np.ndarray, active_only: bool = True) -> float:
    """Mean power of `x` (over its non-silent span when `active_only`)."""
    if active_only:
        start, end = active_span(x)
        x = x[start:end]
    return float(np.mean(x.astype(np.float64) ** 2)) if len(x) else 0.0


def add_noise(x: np.ndarray, noise_signal: np.ndarray, snr_db: float,
              reference: float | None = None) -> np.ndarray:
    """`x` plus `noise_signal` scaled to `snr_db` below `reference` power (default: `x`'s speech)."""
    ref = power(x) if reference is None else reference
    n = np.resize(noise_signal, len(x)).astype(np.float32)
    p_noise = float(np.mean(n.astype(np.float64) ** 2))
    if ref <= 0 or p_noise <= 0:
        return _f32(x.copy())
    gain = np.sqrt(ref / (p_noise * 10 ** (snr_db / 10)))
    return _f32(x + n * np.float32(gain))


NOISES = ("white", "pink", "brown", "hum", "fan")


def noise(kind: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Synthetic noise at unit-ish power: white, pink (1/f), brown (1/f^2), mains hum, fan (low rumble)."""
    n = round(seconds * SAMPLE_RATE)
    if kind == "white":
        return rng.standard_normal(n).astype(np.float32)
    if kind in ("pink", "brown", "fan"):
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        f[0] = f[1] if n > 1 else 1.0
        if kind == "pink":
            shape = 1 / np.sqrt(f)
        elif kind == "brown":
            shape = 1 / f
        else:
            shape = 1 / (1 + (f / 300.0) ** 2)  # fan: flat rumble rolling off above 300 Hz
        y = np.fft.irfft(spectrum * shape, n)
        return _f32(y / (np.std(y) + 1e-12))
    if kind == "hum":
        t = np.arange(n) / SAMPLE_RATE
        base = rng.choice([50.0, 60.0])
        y = sum(np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
        y = y + 0.05 * rng.standard_normal(n)
        return _f32(y / (np.std(y) + 1e-12))
    raise ValueError(f"unknown noise {kind!r} (noises: {', '.join(NOISES)})")


def room_impulse(rt60: float, rng: np.random.Generator, direct_to_reverb_db: float = 3.0) -> np.ndarray:
    """A synthetic room impulse response: the direct path, then exponentially decaying noise."""
    n = max(1, round(rt60 * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.91 * t / rt60)
    delay = round(0.004 * SAMPLE_RATE)  # first reflections arrive a few ms after the direct sound
    tail[:delay] = 0.0
    tail *= np.sqrt(10 ** (-direct_to_reverb_db / 10) / (np.sum(tail ** 2) + 1e-12))
    tail[0] = 1.0
    return tail.astype(np.float32)


def reverb(x: np.ndarray, rt60: float, rng: np.random.Generator,
           direct_to_reverb_db: float = 3.0) -> np.ndarray:
    """`x` as heard in a room with reverberation time `rt60` (seconds); same length, same peak."""
    if rt60 <= 0:
        return _f32(x.copy())
    h = room_impulse(rt60, rng, direct_to_reverb_db)
    size = 1 << int(np.ceil(np.log2(len(x) + len(h))))
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[:len(x)]
    peak_in, peak_out = float(np.max(np.abs(x))), float(np.max(np.abs(y)))
    return (y * (peak_in / peak_out if peak_out > 0 else 1.0)).astype(np.float32)


def write_flac(path: str | Path, samples: np.ndarray, bits: int = 16) -> Path:
    """Write `samples` as FLAC through ffmpeg; `bits` < 16 zeroes the low bits first (smaller files)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SpeechError("writing FLAC needs ffmpeg")
    data = samples if samples.dtype == np.int16 else to_int16(samples)
    if bits < 16:  # round to the coarser grid (FLAC stores the zeroed low bits for free)
        step = 1 << (16 - bits)
        coarse = np.round(data.astype(np.float64) / step) * step
        data = np.clip(coarse, -32768, 32768 - step).astype(np.int16)
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-y", "-f", "s16le", "-ar", str(SAMPLE_RATE), "-ac", "1",
           "-i", "-", "-compression_level", "12", str(path)]
    subprocess.run(cmd, input=data.astype("<i2").tobytes(), check=True, capture_output=True)
    return Path(path)
