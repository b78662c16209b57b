"""Shared helpers of the keyword-spotting tests: the committed fixture set and real TTS audio."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from benchmarks.synth.kws_eval import Manifest, load_manifest
from edged.analysis.kws import KeywordEngine, spot_file
from edged.config.schema import WakewordConfig
from edged.sources.audio.files import read_recording

FIXTURES = Path(__file__).parent / "fixtures" / "kws"


@functools.cache
def fixture_set() -> Manifest:
    return load_manifest(FIXTURES)


@functools.cache
def fixture_audio(name: str) -> np.ndarray:
    samples = read_recording(FIXTURES / name).samples
    samples.flags.writeable = False
    return samples


@functools.cache
def spoken(text: str, engine: str = "espeak-ng", voice: str = "en-us", pad: float = 0.8) -> np.ndarray:
    """`text` spoken by a real TTS engine with `pad` seconds of silence either side (16 kHz int16)."""
    from benchmarks.synth.speech import speak

    silence = np.zeros(round(pad * 16000), dtype=np.int16)
    out = np.concatenate((silence, speak(text, engine, voice), silence))
    out.flags.writeable = False
    return out


def fired(config: WakewordConfig, audio: np.ndarray) -> list[str]:
    """The keywords the real engine made from `config` fires on `audio`, in order."""
    engine = KeywordEngine.from_config(config)
    try:
        return [d.keyword for d in spot_file(engine, audio)]
    finally:
        engine.close()
