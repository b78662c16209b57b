"""Property-based fuzzing of the inputs edged parses: config files, WAV headers, video files."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.config import ConfigError, parse_config
from edged.config.schema import Config
from edged.sources.audio.readers import AudioError, WavReader
from edged.sources.video import StreamError, read_file_frames

# Real key names (so the fuzzer reaches deep into sections), plus anything at all.
KEYS = st.sampled_from(["device", "id", "mqtt", "host", "port", "tls", "ca", "cameras", "porch", "url",
                        "analysis_fps", "motion", "threshold", "masks", "captions", "on", "interval", "min", "max",
                        "microphone", "device", "models", "captioner", "wakeword", "keywords", "defaults", "rules",
                        "labels", "log", "level", "outbox", "ttl", "name", "cutoff", "vad"]) | st.text(max_size=8)
SCALARS = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12) | st.sampled_from(["30s", "5m", "rtsp://x/y", "a.mp4", "-1", "ON", "okay_nabu"]))
YAMLISH = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
                       max_leaves=25)


@settings(max_examples=500, deadline=None)
@given(data=st.dictionaries(KEYS, YAMLISH, max_size=6))
def test_random_yaml_is_a_config_or_a_clean_error(data: dict[str, object]) -> None:
    """Any YAML structure gives a Config or a ConfigError whose every problem has a line and a message."""
    text = yaml.safe_dump(data, allow_unicode=True)
    try:
        config = parse_config(text, "fuzz.yaml")
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == "fuzz.yaml"
            assert problem.message
            assert problem.line >= 1
        return
    assert isinstance(config, Config)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300))
def test_random_text_is_a_config_or_a_clean_error(text: str) -> None:
    """Arbitrary text (broken YAML included) never raises anything but ConfigError."""
    try:
        parse_config(text, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml")


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200), fmt=st.binary(min_size=0, max_size=40))
def test_malformed_wav_headers_are_refused_by_name(body: bytes, fmt: bytes) -> None:
    """RIFF/WAVE files with random chunks: a readable file, or an AudioError naming it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mic.wav"
        size = len(fmt).to_bytes(4, "little")
        path.write_bytes(b"RIFF" + (36 + len(body)).to_bytes(4, "little") + b"WAVEfmt " + size + fmt
                         + b"data" + len(body).to_bytes(4, "little") + body)
        try:
            reader = WavReader(str(path))
        except AudioError as exc:
            assert "mic.wav" in str(exc)
            return
        try:
            for _ in range(10):
                reader.read(0.0)
        except Exception as exc:  # the end of a short file is the only other way out
            assert type(exc).__name__ == "SourceEnded"
        finally:
            reader.close()


@settings(max_examples=12, deadline=None)
@given(head=st.sampled_from([b"", b"\x00\x00\x00\x18ftypmp42", b"\x1aE\xdf\xa3", b"RIFF\x00\x00\x00\x00AVI "]),
       body=st.binary(min_size=0, max_size=4000))
def test_malformed_video_files_are_refused_by_name(head: bytes, body: bytes) -> None:
    """Video-looking headers with garbage after them: a StreamError naming the file (or no frames), never a crash."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cam.mp4"
        path.write_bytes(head + body)
        try:
            frames = list(read_file_frames(str(path)))
        except StreamError as exc:
            assert "cam.mp4" in str(exc)
            return
        assert all(f.image.ndim == 3 for f in frames)
