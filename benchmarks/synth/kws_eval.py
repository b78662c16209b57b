"""The keyword-spotting evaluation set: synthetic streams with ground truth.

Four kinds of file, each a long continuous stream (as a microphone would deliver):

- `positive`: scenes of one keyword, spoken by a random engine/voice/speed/pitch, alone or inside a
  sentence by the same voice, clean, in noise at 20/10/5 dB SNR, or in a reverberant room;
- `speech`: ordinary household talk by many voices, no keyword (false accepts per hour);
- `near_miss`: phrases that sound close to a keyword (adversarial false accepts);
- `noise`: noises and babble at several levels.

A faint noise floor (a microphone's self-noise) runs under everything. `build()` writes FLAC files
plus `manifest.json` (the spec, the files and every keyword occurrence: file, start, end, voice,
condition) and is deterministic for a seed and a given set of TTS engine versions.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.kws_evaluation import Occurrence
from benchmarks.synth import speech as sp
from benchmarks.synth.texts import KEYWORD_PHRASES, NEAR_MISSES, near_misses, ordinary_sentences
from edged.sources.audio.chunk import SAMPLE_RATE

Progress = Callable[[str], None]
SPEEDS = (0.8, 0.9, 1.0, 1.1, 1.25)
PITCHES = (0.85, 1.0, 1.15)
SNRS = (20.0, 10.0, 5.0)
RT60S = (0.3, 0.6, 0.9)
ENGINE_WEIGHTS = {"espeak-ng": 0.5, "flite": 0.3, "festival": 0.2, "mbrola": 0.5, "pico": 0.5}


@dataclass(frozen=True)
class EvalSpec:
    """What to build; the same spec and seed give the same set."""

    seed: int = 7
    positives: int = 120  # per keyword
    speech_minutes: float = 180.0
    near_miss_voices: int = 3  # voices speaking each near-miss phrase
    noise_minutes: float = 4.0
    keywords: tuple[str, ...] = tuple(KEYWORD_PHRASES)
    scenes_per_file: int = 30
    floor_db: float = -66.0  # RMS of the noise floor under everything (dBFS)
    engines: tuple[str, ...] = ()  # TTS engines to speak with (empty: every installed one)
    part: int = -1  # 0 or 1: only that half of the sentences and near misses (-1: all of the originals)
    near_miss_pool: int = 1  # which near-miss phrases (`texts.near_misses`): 1 the first lists, 2 the larger pool

    @property
    def text_part(self) -> int | None:
        return None if self.part < 0 else self.part


@dataclass(frozen=True)
class EvalFile:
    path: str  # relative to the set's folder
    kind: str  # positive, speech, near_miss, noise
    duration: float
    keyword: str = ""  # for positive files


@dataclass(frozen=True)
class Manifest:
    folder: Path
    spec: EvalSpec
    files: tuple[EvalFile, ...]
    occurrences: tuple[Occurrence, ...]

    def of_kind(self, kind: str) -> list[EvalFile]:
        return [f for f in self.files if f.kind == kind]

    def save(self) -> Path:
        data = {"version": 1, "sample_rate": SAMPLE_RATE, "spec": dataclasses.asdict(self.spec),
                "files": [dataclasses.asdict(f) for f in self.files],
                "occurrences": [dataclasses.asdict(o) for o in self.occurrences]}
        path = self.folder / "manifest.json"
        path.write_text(json.dumps(data, indent=1) + "\n")
        return path


def load_manifest(folder: str | Path) -> Manifest:
    folder = Path(folder)
    data = json.loads((folder / "manifest.json").read_text())
    spec_data: dict[str, Any] = dict(data["spec"])
    spec_data["keywords"] = tuple(spec_data["keywords"])
    spec_data["engines"] = tuple(spec_data.get("engines", ()))
    return Manifest(folder, EvalSpec(**spec_data), tuple(EvalFile(**f) for f in data["files"]),
                    tuple(Occurrence(**o) for o in data["occurrences"]))


class _Builder:
    def __init__(self, spec: EvalSpec, progress: Progress) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(spec.seed)
        self.progress = progress
        wanted = spec.engines or sp.ENGINES
        self.engines = [e for e in sp.available_engines(sp.ENGINES + sp.NONFREE_ENGINES) if e in wanted]
        if not self.engines:
            raise sp.SpeechError(f"none of the TTS engines {', '.join(wanted)} is installed")
        missing = [e for e in spec.engines if e not in self.engines]
        if missing:  # a set that names its engines is that set: speaking with fewer would quietly change it
            raise sp.SpeechError("; ".join(f"TTS engine {e} is not installed ({sp.install_hint(e)})" for e in missing))
        self.part = spec.text_part
        self._babble: np.ndarray | None = None

    # -- random choices --------------------------------------------------------------------------

    def voice(self) -> sp.Voice:
        weights = np.array([ENGINE_WEIGHTS[e] for e in self.engines])
        engine = str(self.rng.choice(self.engines, p=weights / weights.sum()))
        return sp.Voice(engine, str(self.rng.choice(sp.VOICES[engine])), float(self.rng.choice(SPEEDS)),
                        float(self.rng.choice(PITCHES)))

    def sentence(self) -> str:
        return ordinary_sentences(1, self.rng, self.part)[0]

    def condition(self) -> tuple[str, str | None, float, float]:
        """(label, noise kind or None, snr, rt60)."""
        r = self.rng.random()
        kind = str(self.rng.choice((*sp.NOISES, "babble")))
        snr = float(self.rng.choice(SNRS))
        if r < 0.3:
            return "clean", None, 0.0, 0.0
        if r < 0.75:
            return f"{kind}@{snr:g}dB", kind, snr, 0.0
        rt60 = float(self.rng.choice(RT60S))
        if self.rng.random() < 0.5:
            return f"reverb{rt60:g}", None, 0.0, rt60
        return f"reverb{rt60:g}+{kind}@20dB", kind, 20.0, rt60

    def noise(self, kind: str, seconds: float) -> np.ndarray:
        if kind != "babble":
            return sp.noise(kind, seconds, self.rng)
        if self._babble is None:
            self._babble = self._make_babble(20.0)
        n = round(seconds * SAMPLE_RATE)
        start = int(self.rng.integers(0, max(1, len(self._babble) - 1)))
        return np.resize(np.roll(self._babble, -start), n)

    def _make_babble(self, seconds: float) -> np.ndarray:
        """Several talkers at once: speech-shaped noise, the hardest kind for a wake word."""
        out = sp.silence(seconds)
        for _ in range(5):
            t = 0
            while t < len(out):
                voice = self.voice()
                s = sp.trim(sp.to_float(voice.speak(self.sentence())))
                out = sp.overlay(out, sp.normalize(s, -6.0), t)[:len(out)]
                t += len(s)
        scaled: np.ndarray = out / (np.std(out) + 1e-12)
        return scaled

    # -- scenes ----------------------------------------------------------------------------------

    def scene(self, phrase: str | None, voice: sp.Voice,
              context: bool = True) -> tuple[np.ndarray, tuple[int, int]]:
        """A scene: lead-in, maybe a sentence before, the phrase, maybe one after, a tail.

        Returns the audio and the phrase's active span (samples) inside it; (0, 0) without a phrase.
        """
        parts: list[np.ndarray] = [sp.silence(float(self.rng.uniform(0.5, 1.2)))]
        if context and self.rng.random() < 0.5:
            parts += [sp.trim(sp.to_float(voice.speak(self.sentence()))),
                      sp.silence(float(self.rng.uniform(0.15, 0.6)))]
        span = (0, 0)
        if phrase is not None:
            words = sp.to_float(voice.speak(phrase))
            start, end = sp.active_span(words)
            offset = sum(len(p) for p in parts)
            span = (offset, offset + end - start)
            parts.append(words[start:end])
        if context and self.rng.random() < 0.5:
            parts += [sp.silence(float(self.rng.uniform(0.2, 0.6))),
                      sp.trim(sp.to_float(voice.speak(self.sentence())))]
        parts.append(sp.silence(1.0))
        audio = sp.normalize(np.concatenate(parts), float(self.rng.uniform(-26.0, -6.0)))
        return audio, span

    def apply(self, audio: np.ndarray, condition: tuple[str, str | None, float, float],
              reference: float) -> np.ndarray:
        _, kind, snr, rt60 = condition
        if rt60 > 0:
            audio = sp.reverb(audio, rt60, self.rng)
        if kind is not None:
            audio = sp.add_noise(audio, self.noise(kind, len(audio) / SAMPLE_RATE), snr, reference)
        return audio

    def floor(self, audio: np.ndarray) -> np.ndarray:
        hiss = sp.noise("pink", len(audio) / SAMPLE_RATE, self.rng)
        out: np.ndarray = audio + hiss * np.float32(10 ** (self.spec.floor_db / 20))
        return out


def build(folder: str | Path, spec: EvalSpec | None = None, progress: Progress | None = None) -> Manifest:
    """Build the evaluation set into `folder` (see the module docstring)."""
    spec = spec or EvalSpec()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    b = _Builder(spec, progress or (lambda _m: None))
    files, occurrences = positive_files(b, folder)
    files += _speech_files(b, folder)
    files.append(_near_miss_file(b, folder))
    if spec.noise_minutes > 0:  # a set of near misses only has none
        files.append(_noise_file(b, folder))
    manifest = Manifest(folder, spec, tuple(files), tuple(occurrences))
    manifest.save()
    return manifest


def _positive_stream(b: _Builder, keyword: str, name: str, count: int) -> tuple[np.ndarray, list[Occurrence]]:
    pieces: list[np.ndarray] = []
    occ: list[Occurrence] = []
    at = 0
    for _ in range(count):
        voice = b.voice()
        phrase = str(b.rng.choice(KEYWORD_PHRASES[keyword]))
        audio, (s, e) = b.scene(phrase, voice)
        condition = b.condition()
        audio = b.apply(audio, condition, sp.power(audio[s:e], active_only=False))
        occ.append(Occurrence(name, keyword, (at + s) / SAMPLE_RATE, (at + e) / SAMPLE_RATE, condition[0],
                              voice.label))
        pieces += [audio, sp.silence(1.5)]
        at += len(audio) + round(1.5 * SAMPLE_RATE)
    return b.floor(np.concatenate(pieces)), occ


def _speech_files(b: _Builder, folder: Path) -> list[EvalFile]:
    """Ordinary conversation: ~30 s segments, each with its own condition, several voices."""
    files = []
    per_file = 300.0
    total = b.spec.speech_minutes * 60
    for index in range(int(np.ceil(total / per_file))):
        target = min(per_file, total - index * per_file)
        b.progress(f"ordinary speech: file {index + 1} of {int(np.ceil(total / per_file))}")
        pieces: list[np.ndarray] = []
        length = 0
        while length < target * SAMPLE_RATE:
            voices = [b.voice() for _ in range(2)]
            segment: list[np.ndarray] = []
            while sum(len(p) for p in segment) < 30 * SAMPLE_RATE:
                voice = voices[int(b.rng.integers(0, 2))]
                words = sp.trim(sp.to_float(voice.speak(b.sentence())))
                segment += [sp.normalize(words, float(b.rng.uniform(-26.0, -6.0))),
                            sp.silence(float(b.rng.uniform(0.3, 1.5)))]
            audio = np.concatenate(segment)
            audio = b.apply(audio, b.condition(), sp.power(audio))
            pieces.append(audio)
            length += len(audio)
        files.append(_write(folder, f"speech_{index:02d}.flac", b.floor(np.concatenate(pieces)), "speech"))
    return files


def positive_files(b: _Builder, folder: Path) -> tuple[list[EvalFile], list[Occurrence]]:
    """`spec.positives` keyword scenes per keyword, `scenes_per_file` to a file."""
    spec, files, occurrences = b.spec, [], []
    for keyword in spec.keywords:
        for index in range(0, spec.positives, spec.scenes_per_file):
            count = min(spec.scenes_per_file, spec.positives - index)
            name = f"positive_{keyword}_{index // spec.scenes_per_file:02d}.flac"
            b.progress(f"positives {keyword}: scenes {index + 1}-{index + count} of {spec.positives}")
            audio, occ = _positive_stream(b, keyword, name, count)
            files.append(_write(folder, name, audio, "positive", keyword))
            occurrences += occ
    return files, occurrences


def near_miss_scenes(b: _Builder, phrases: Iterable[str]) -> list[np.ndarray]:
    """Each phrase by `near_miss_voices` voices, each in its own room and noise, a second apart."""
    pieces = []
    for phrase in phrases:
        for _ in range(b.spec.near_miss_voices):
            audio, (s, e) = b.scene(phrase, b.voice())
            condition = b.condition()
            reference = sp.power(audio[s:e], active_only=False)
            pieces += [b.apply(audio, condition, reference), sp.silence(1.0)]
    return pieces


def _near_miss_file(b: _Builder, folder: Path) -> EvalFile:
    b.progress("near misses")
    pieces = [p for keyword in b.spec.keywords
              for p in near_miss_scenes(b, near_misses(keyword, b.part, b.spec.near_miss_pool))]
    return _write(folder, "near_miss.flac", b.floor(np.concatenate(pieces)), "near_miss")


def _noise_file(b: _Builder, folder: Path) -> EvalFile:
    b.progress("noise")
    pieces = []
    per = 10.0
    for _ in range(int(b.spec.noise_minutes * 60 / per)):
        kind = str(b.rng.choice((*sp.NOISES, "babble")))
        level = float(b.rng.uniform(-45.0, -15.0))
        pieces.append(b.noise(kind, per) * np.float32(10 ** (level / 20)))
    return _write(folder, "noise.flac", b.floor(np.concatenate(pieces)), "noise")


def _write(folder: Path, name: str, audio: np.ndarray, kind: str, keyword: str = "") -> EvalFile:
    sp.write_flac(folder / name, audio)
    return EvalFile(name, kind, round(len(audio) / SAMPLE_RATE, 3), keyword)


# -- the small committed subset (tests/fixtures/kws) ------------------------------------------------

FIXTURE_CONDITIONS = (("clean", None, 0.0, 0.0), ("pink@20dB", "pink", 20.0, 0.0),
                      ("babble@10dB", "babble", 10.0, 0.0), ("reverb0.3", None, 0.0, 0.3))
FIXTURE_BITS = 10  # quantization noise about -65 dBFS, like a microphone's own floor


def build_fixture(folder: str | Path, seed: int = 11, progress: Progress | None = None) -> Manifest:
    """A compact set for tests: per keyword one stream of four short scenes (three engines; clean,
    pink noise at 20 dB, babble at 10 dB, light reverb), one near-miss stream and one of ordinary
    speech. Scenes carry no context sentences and the files are 10-bit FLAC, to stay small."""
    spec = EvalSpec(seed=seed, positives=len(FIXTURE_CONDITIONS), speech_minutes=0.2, near_miss_voices=1,
                    noise_minutes=0.0, scenes_per_file=len(FIXTURE_CONDITIONS), floor_db=-90.0)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    b = _Builder(spec, progress or (lambda _m: None))
    files: list[EvalFile] = []
    occurrences: list[Occurrence] = []
    engines = [e for e in ("espeak-ng", "flite", "festival") if e in b.engines]
    for keyword in spec.keywords:
        b.progress(f"fixture positives {keyword}")
        name = f"positive_{keyword}.flac"
        pieces: list[np.ndarray] = []
        at = 0
        for i, condition in enumerate(FIXTURE_CONDITIONS):
            engine = engines[i % len(engines)]
            name_of_voice = str(b.rng.choice(sp.VOICES[engine]))
            voice = sp.Voice(engine, name_of_voice, float(b.rng.choice((0.9, 1.0, 1.1))))
            audio, (s, e) = b.scene(str(b.rng.choice(KEYWORD_PHRASES[keyword])), voice, context=False)
            audio = b.apply(audio, condition, sp.power(audio[s:e], active_only=False))
            occurrences.append(Occurrence(name, keyword, (at + s) / SAMPLE_RATE, (at + e) / SAMPLE_RATE,
                                          condition[0], voice.label))
            pieces += [audio, sp.silence(0.3)]
            at += len(audio) + round(0.3 * SAMPLE_RATE)
        files.append(_write_small(folder, name, np.concatenate(pieces), "positive", keyword))
    b.progress("fixture near misses and ordinary speech")
    near: list[np.ndarray] = []
    for keyword in spec.keywords:
        for phrase in NEAR_MISSES[keyword][:1]:
            audio, _ = b.scene(phrase, b.voice(), context=False)
            near += [audio, sp.silence(0.5)]
    files.append(_write_small(folder, "near_miss.flac", np.concatenate(near), "near_miss"))
    talk: list[np.ndarray] = []
    while sum(len(p) for p in talk) < spec.speech_minutes * 60 * SAMPLE_RATE:
        words = sp.trim(sp.to_float(b.voice().speak(b.sentence())))
        talk += [sp.normalize(words, float(b.rng.uniform(-20.0, -6.0))), sp.silence(0.4)]
    files.append(_write_small(folder, "speech.flac", np.concatenate(talk), "speech"))
    manifest = Manifest(folder, spec, tuple(files), tuple(occurrences))
    manifest.save()
    return manifest


def _write_small(folder: Path, name: str, audio: np.ndarray, kind: str, keyword: str = "") -> EvalFile:
    sp.write_flac(folder / name, audio, bits=FIXTURE_BITS)
    return EvalFile(name, kind, round(len(audio) / SAMPLE_RATE, 3), keyword)
