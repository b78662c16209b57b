"""Audio in: WAV decoding, conversions reported, bad input refused; and the VAD gate."""

from __future__ import annotations

import dataclasses
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from edged.analysis.kws import KeywordEngine, spot_file
from edged.analysis.kws.vad import VadGate, level_db
from edged.config.schema import VadConfig, WakewordConfig
from edged.sources.audio.chunk import AudioChunk
from edged.sources.audio.files import iter_chunks, read_recording
from edged.sources.audio.readers import AudioError
from tests.kws_support import spoken


def _wav(path: Path, data: bytes, *, rate: int, channels: int, bits: int, tag: int = 1) -> Path:
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def test_wav_encodings_decode_to_the_same_samples(tmp_path: Path) -> None:
    """8/16/24/32-bit PCM and float WAV all become the same 16 kHz int16 (up to each format's precision)."""
    ref = (np.sin(np.arange(1600) / 7.0) * 20000).astype(np.int16)
    x = ref.astype(np.float64) / 32768
    cases = {
        "pcm16": (ref.astype("<i2").tobytes(), 16, 1, 1),
        "pcm24": (b"".join(struct.pack("<i", int(v) << 8)[:3] for v in ref), 24, 1, 256),
        "pcm32": ((ref.astype(np.int64) << 16).astype("<i4").tobytes(), 32, 1, 1),
        "float32": (x.astype("<f4").tobytes(), 32, 3, 1),
        "float64": (x.astype("<f8").tobytes(), 64, 3, 1),
        "pcm8": ((np.round(x * 128) + 128).clip(0, 255).astype(np.uint8).tobytes(), 8, 1, 256),
    }
    for name, (data, bits, tag, tolerance) in cases.items():
        audio = read_recording(_wav(tmp_path / f"{name}.wav", data, rate=16000, channels=1, bits=bits, tag=tag))
        assert audio.conversions == ()
        assert np.max(np.abs(audio.samples.astype(int) - ref)) <= tolerance, name


def test_stereo_and_other_rates_are_converted_and_said(tmp_path: Path) -> None:
    """Stereo 44.1 kHz float audio is mixed, resampled and still spotted; the conversions are reported."""
    speech = spoken("hey jarvis").astype(np.float32) / 32768
    t = np.arange(int(len(speech) * 44100 / 16000))
    at_44k = np.interp(t * 16000 / 44100, np.arange(len(speech)), speech).astype("<f4")
    stereo = np.stack([at_44k, at_44k * 0.5], axis=1).tobytes()
    audio = read_recording(_wav(tmp_path / "stereo.wav", stereo, rate=44100, channels=2, bits=32, tag=3))
    assert "2 channels mixed to mono" in audio.conversions
    assert "resampled from 44100 Hz to 16000 Hz" in audio.conversions
    engine = KeywordEngine.from_config(WakewordConfig(keywords=("hey_jarvis",)))
    assert [h.keyword for h in spot_file(engine, audio.samples)] == ["hey_jarvis"]
    engine.close()


def test_bad_audio_is_refused_with_the_reason(tmp_path: Path) -> None:
    """Too-low rates, odd encodings, non-audio and missing files each fail with a clear message."""
    with pytest.raises(AudioError, match="sample rate 4000 Hz is too low"):
        read_recording(_wav(tmp_path / "low.wav", b"\0\0" * 400, rate=4000, channels=1, bits=16))
    with pytest.raises(AudioError, match=r"alaw\.wav: .*format tag 0x6"):
        read_recording(_wav(tmp_path / "alaw.wav", b"\0" * 400, rate=8000, channels=1, bits=8, tag=6))
    (tmp_path / "notes.txt").write_text("not audio at all")
    with pytest.raises(AudioError, match=r"notes\.txt: ffmpeg exited with status 1: .*Invalid data"):
        read_recording(tmp_path / "notes.txt")
    with pytest.raises(AudioError, match="no such file"):
        read_recording(tmp_path / "missing.wav")


def test_wav_written_by_the_stdlib_reads_back(tmp_path: Path) -> None:
    """A plain 16 kHz mono WAV comes back sample for sample."""
    ref = (np.arange(3200) % 200 * 100 - 10000).astype(np.int16)
    with wave.open(str(tmp_path / "plain.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(ref.tobytes())
    assert np.array_equal(read_recording(tmp_path / "plain.wav").samples, ref)


def _chunk(level: float, seq: int) -> AudioChunk:
    samples = (np.ones(160) * 32767 * 10 ** (level / 20)).astype(np.int16)
    return AudioChunk("m", seq, samples, (seq + 1) * 0.01, 0.0, 0.0)


def test_vad_gate_opens_on_level_and_closes_after_the_hangover() -> None:
    """Quiet chunks are held back; a loud one opens the gate; it closes once the hangover has passed."""
    gate = VadGate(threshold_db=-40, hangover=0.03)
    assert [gate.push(_chunk(-70, i)) for i in range(3)] == [False, False, False]
    assert gate.push(_chunk(-20, 3))
    assert [gate.push(_chunk(-70, i)) for i in range(4, 9)] == [True, True, True, False, False]  # 30 ms
    assert not gate.is_open
    assert gate.openings == 1
    assert gate.passed_fraction == 4 / 9
    assert level_db(np.zeros(10, np.int16)) == -120.0
    assert level_db(np.full(100, 32767, np.int16)) == pytest.approx(0.0, abs=0.01)


@pytest.mark.parametrize("backend", ["micro-wakeword", "openwakeword"])
def test_gated_chunks_are_replayed_as_pre_roll(backend: str) -> None:
    """While the gate is shut a backend keeps only the pre-roll; when it opens the models start fresh
    on it, so the gated stream scores like a fresh stream that starts at the pre-roll."""
    speech = spoken("hey jarvis", "flite", "rms", pad=0.0)
    audio = np.concatenate((np.zeros(16000, np.int16), speech, np.zeros(8000, np.int16)))
    config = WakewordConfig(backend=backend, keywords=("hey_jarvis",))  # type: ignore[arg-type]
    engine = KeywordEngine.from_config(config)
    gated = KeywordEngine.from_config(dataclasses.replace(config, vad=VadConfig(enabled=True, pre_roll=0.2)))
    got = [(d.stream_time, d.score) for d in spot_file(gated, audio)]
    want = [(d.stream_time, d.score) for d in spot_file(engine, audio)]
    assert got
    assert want
    assert got[0][0] == pytest.approx(want[0][0], abs=0.1)
    assert gated.vad is not None
    assert gated.vad.passed_fraction < 0.9
    engine.close()
    gated.close()


def test_vad_keeps_a_keyword_spoken_right_after_silence() -> None:
    """With the gate on, a keyword that starts the speech is still detected (the pre-roll covers it)."""
    audio = np.concatenate(
        (np.zeros(32000, np.int16), spoken("hey mycroft", pad=0.0), np.zeros(16000, np.int16))
    )
    for enabled in (False, True):
        engine = KeywordEngine.from_config(
            WakewordConfig(keywords=("hey_mycroft",), vad=VadConfig(enabled=enabled))
        )
        assert [h.keyword for h in spot_file(engine, audio)] == ["hey_mycroft"]
        if enabled:
            assert engine.vad is not None
            assert engine.vad.passed_fraction < 0.6
        engine.close()


def test_chunks_carry_stream_time() -> None:
    """The daemon's chunking: full chunks, a short last one, stream time at each chunk's end."""
    chunks = list(iter_chunks(np.zeros(500, np.int16), 160))
    assert [len(c.samples) for c in chunks] == [160, 160, 160, 20]
    assert [c.stream_time for c in chunks] == [0.01, 0.02, 0.03, 0.03125]


def test_other_containers_go_through_ffmpeg(tmp_path: Path) -> None:
    """FLAC at 16 kHz mono needs no note; a stereo 44.1 kHz one is converted and says so."""
    from tests.kws_support import FIXTURES

    assert read_recording(FIXTURES / "speech.flac").conversions == ()
    stereo = tmp_path / "stereo.flac"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(FIXTURES / "speech.flac"),
            "-ac",
            "2",
            "-ar",
            "44100",
            str(stereo),
        ],
        check=True,
    )
    notes = read_recording(stereo).conversions
    assert "2 channels mixed to mono" in notes  # worded as for WAV: one path, one wording
    assert "resampled from 44100 Hz to 16000 Hz" in notes
