"""Synthetic speech and the mixer (real TTS engines: espeak-ng, flite, festival)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.synth import speech as sp
from edged.sources.audio.convert import to_int16
from edged.sources.audio.files import read_recording
from edged.sources.audio.wav import write_wav

ENGINES = sp.available_engines()


@pytest.mark.parametrize("engine", sp.ENGINES)
def test_each_engine_speaks_16k_int16(engine: str) -> None:
    """Every installed engine returns 16 kHz mono int16 speech of a plausible length; speed changes it."""
    if engine not in ENGINES:
        pytest.fail(
            f"TTS engine {engine} is not installed (the keyword tests need espeak-ng, flite and festival)"
        )
    normal = sp.speak("okay nabu", engine)
    assert normal.dtype == np.int16
    assert normal.ndim == 1
    start, end = sp.active_span(sp.to_float(normal))
    assert 0.4 < (end - start) / 16000 < 2.0
    assert np.max(np.abs(normal)) > 3000
    slow = sp.speak("okay nabu", engine, speed=0.7)
    assert len(slow) > len(normal) * 1.15


def test_voices_differ_and_bad_requests_fail() -> None:
    """Different voices give different audio; an unknown engine or out-of-range speed is refused."""
    assert not np.array_equal(
        sp.speak("hello", "espeak-ng", "en-us"), sp.speak("hello", "espeak-ng", "en-gb")
    )
    with pytest.raises(sp.SpeechError, match="unknown TTS engine"):
        sp.speak("hello", "sapi")
    with pytest.raises(sp.SpeechError, match="speed must be"):
        sp.speak("hello", speed=9)


def test_noise_at_a_chosen_snr() -> None:
    """add_noise scales the noise to the requested SNR against the speech's active power."""
    rng = np.random.default_rng(1)
    speech = sp.to_float(sp.speak("the kettle has boiled", "espeak-ng"))
    for kind in sp.NOISES:
        noise = sp.noise(kind, len(speech) / 16000, rng)
        mixed = sp.add_noise(speech, noise, 10.0)
        added = mixed - speech
        snr = 10 * np.log10(sp.power(speech) / np.mean(added.astype(np.float64) ** 2))
        assert snr == pytest.approx(10.0, abs=0.2), kind


def test_reverb_overlay_and_files(tmp_path: Path) -> None:
    """Reverb keeps length and peak and spreads energy later; overlay places a sound; WAV/FLAC round-trip."""
    rng = np.random.default_rng(2)
    click = np.zeros(16000, np.float32)
    click[100] = 0.5
    wet = sp.reverb(click, 0.5, rng)
    assert len(wet) == len(click)
    assert np.max(np.abs(wet)) == pytest.approx(0.5)
    assert np.sum(wet[2000:] ** 2) > 0.001
    base = sp.overlay(sp.silence(1.0), np.ones(100, np.float32) * 0.1, 15950)
    assert len(base) == 16050
    assert base[15960] == pytest.approx(0.1)
    data = to_int16(sp.to_float(sp.speak("testing", "flite")))
    assert np.array_equal(read_recording(write_wav(tmp_path / "a.wav", data)).samples, data)
    assert np.array_equal(read_recording(sp.write_flac(tmp_path / "a.flac", data)).samples, data)
    coarse = read_recording(sp.write_flac(tmp_path / "b.flac", data, bits=10)).samples
    assert np.max(np.abs(coarse.astype(int) - data)) <= 32


def test_nonfree_engines_commands_and_missing_engine_named(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    """The non-free engines (not installed by setup, so not run here): MBROLA goes
    through espeak-ng's mb- voices, Pico gets its prosody as escaped SSML; a set that asks for an engine
    that is missing (non-free or not) is refused with the Debian package to install, instead of quietly
    speaking with fewer engines."""
    from benchmarks.synth.kws_eval import EvalSpec, _Builder

    out = tmp_path / "x.wav"
    cmd, stdin = sp._command("mbrola", "us2", "okay nabu", (1.2, 0.8), out)
    assert cmd[:3] == ["espeak-ng", "-v", "mb-us2"] and stdin is None
    assert cmd[cmd.index("-s") + 1] == "210" and cmd[cmd.index("-p") + 1] == "40"
    cmd, _ = sp._command("pico", "en-GB", "Tom & <Jerry>", (0.9, 1.1), out)
    assert cmd[:5] == ["pico2wave", "-l", "en-GB", "-w", str(out)]
    assert cmd[5] == "<speed level='90'><pitch level='110'>Tom &amp; &lt;Jerry&gt;</pitch></speed>"

    real_which = sp.shutil.which
    monkeypatch.setattr(sp.shutil, "which", lambda b: None if b == "pico2wave" else real_which(b))
    with pytest.raises(sp.SpeechError, match=r"pico is not installed.*libttspico-utils"):
        _Builder(EvalSpec(engines=("espeak-ng", "pico")), lambda _m: None)
    with pytest.raises(sp.SpeechError, match="pico is not installed"):
        sp.speak("hello", "pico")
    assert "pico" not in _Builder(EvalSpec(), lambda _m: None).engines  # the default set never has them
    # the same for a free engine that a set names: flite missing is an error, not a set without flite
    monkeypatch.setattr(sp.shutil, "which", lambda b: None if b == "flite" else real_which(b))
    with pytest.raises(sp.SpeechError, match=r"flite is not installed"):
        _Builder(EvalSpec(engines=("espeak-ng", "flite")), lambda _m: None)
    assert "flite" not in _Builder(EvalSpec(), lambda _m: None).engines  # unnamed: every installed one
