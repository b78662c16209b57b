"""Audio sources on real inputs: WAV files in every common format, FLAC and media files through FFmpeg,
raw PCM on stdin and a FIFO, and RTSP audio from a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import psutil
import pytest
from structlog.testing import capture_logs

from edged.config.schema import BackoffConfig, MicrophoneConfig
from edged.config.urls import redact_text, with_password
from edged.queues import QueueClosed
from edged.sources.audio.chunk import SAMPLE_RATE
from edged.sources.audio.convert import StreamResampler, decode_pcm
from edged.sources.audio.readers import AudioError, WavReader
from edged.sources.audio.source import AudioSource, Chunker
from edged.supervise import Health, SourceState
from tests.support.broker import Broker
from tests.support.daemon import DaemonProcess
from tests.support.media import ffmpeg, make_tone_wav
from tests.support.mqtt import Subscriber
from tests.support.rtsp import RtspServer

# Camera passwords with what a url, a shell or ffmpeg's concat list would each trip over.
PASSWORD = "g00d pa'ss:w/rd"
WRONG = "b@d pa'ss%w"


def forms(password: str) -> list[str]:
    """A password as typed and as it appears in a url."""
    return [password, quote(password, safe="")]


def ffmpeg_cmdlines(pid: int) -> list[bytes]:
    """/proc/PID/cmdline (what `ps` shows any local user) of each ffmpeg under process `pid`."""
    out = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if child.name() == "ffmpeg":
                out.append(Path(f"/proc/{child.pid}/cmdline").read_bytes())
        except (psutil.NoSuchProcess, FileNotFoundError):
            continue  # ended between the listing and the read
    return out


def assert_hidden(text: str | bytes, *passwords: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    for password in passwords:
        for form in forms(password):
            assert form.encode() not in data, f"password {form!r} leaked"


def dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(x))


def read_all(mic: MicrophoneConfig, timeout: float = 10.0) -> tuple[np.ndarray, AudioSource]:
    """Run an AudioSource until it ends; return all its samples."""
    source = AudioSource(mic, on_health=lambda h: None)
    source.start()
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = source.chunks.get(timeout=0.2)
            except QueueClosed:
                break
            if chunk is not None:
                assert len(chunk.samples) == source.chunk_samples
                chunks.append(chunk)
            elif source.supervisor.health().state is SourceState.ENDED and not len(source.chunks):
                break
    finally:
        source.stop()
    assert chunks, "no audio came out"
    times = [c.stream_time for c in chunks]
    assert times == sorted(times)
    return np.concatenate([c.samples for c in chunks]), source


@pytest.mark.parametrize(("codec", "rate", "channels"), [
    ("pcm_s16le", 16000, 1), ("pcm_u8", 16000, 1), ("pcm_s24le", 48000, 2), ("pcm_s32le", 44100, 1),
    ("pcm_f32le", 22050, 2), ("pcm_f64le", 8000, 1),
])
def test_wav_formats_become_16k_mono(tmp_path: Path, codec: str, rate: int, channels: int) -> None:
    """8/16/24/32-bit and float WAV, any rate, mono or stereo: 16 kHz mono with the tone intact."""
    wav = make_tone_wav(tmp_path / f"{codec}.wav", seconds=1.0, rate=rate, channels=channels, codec=codec)
    samples, _ = read_all(MicrophoneConfig(id="m", device=str(wav), realtime=False))
    assert len(samples) == pytest.approx(SAMPLE_RATE, abs=SAMPLE_RATE * 0.02)
    assert dominant_hz(samples) == pytest.approx(440, abs=5)
    assert np.abs(samples).max() > 2000  # ffmpeg tones peak at 1/8 full scale (4096); not lost in scaling


def test_wav_errors_name_the_file(tmp_path: Path) -> None:
    """A missing or non-WAV file is refused by name."""
    with pytest.raises(AudioError, match=r"nope\.wav: file not found"):
        WavReader(str(tmp_path / "nope.wav"))
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"MThd" + b"\x00" * 64)
    with pytest.raises(AudioError, match=r"junk\.wav: not a RIFF/WAVE file"):
        WavReader(str(junk))


def test_resampler_is_seamless_across_chunk_boundaries() -> None:
    """Feeding a signal in odd-sized pieces gives exactly the output of feeding it whole."""
    x = np.random.default_rng(1).standard_normal(48000 * 2).astype(np.float32) * 0.1
    whole = StreamResampler(48000).process(x)
    r = StreamResampler(48000)
    parts = np.concatenate([r.process(p) for p in np.array_split(x, 53)])
    assert np.array_equal(whole, parts)


def test_resampler_rejects_aliases() -> None:
    """A 10 kHz tone (above 8 kHz Nyquist) at 48 kHz is strongly attenuated, a 1 kHz tone is kept."""
    t = np.arange(48000) / 48000
    keep = StreamResampler(48000).process(np.sin(2 * np.pi * 1000 * t).astype(np.float32))
    alias = StreamResampler(48000).process(np.sin(2 * np.pi * 10000 * t).astype(np.float32))
    assert np.sqrt(np.mean(keep[200:-200] ** 2)) > 0.6
    assert np.sqrt(np.mean(alias[200:-200] ** 2)) < 0.05


def test_pcm_decoding_scales_each_format() -> None:
    """Full-scale values of each sample format map to about +-1."""
    assert decode_pcm(b"\xff\x7f\x00\x80", "s16", 1)[:, 0] == pytest.approx([32767 / 32768, -1.0])
    assert decode_pcm(b"\x00\xff", "u8", 1)[:, 0] == pytest.approx([-1.0, 127 / 128])
    assert decode_pcm(b"\xff\xff\x7f\x00\x00\x80", "s24", 1)[:, 0] == pytest.approx([1.0, -1.0], abs=1e-6)


def test_chunker_cuts_exact_chunks_and_keeps_the_rest() -> None:
    """Blocks of any size come out as fixed chunks; nothing is lost between calls."""
    c = Chunker(160)
    out = c.feed(np.ones(250, np.float32) * 0.5) + c.feed(np.ones(230, np.float32) * 0.5)
    assert [len(x) for x in out] == [160, 160, 160]


def test_flac_and_media_audio_tracks_through_ffmpeg(tmp_path: Path, clip: Path) -> None:
    """FLAC files and a video file's AAC track decode through the ffmpeg reader."""
    wav = make_tone_wav(tmp_path / "t.wav", seconds=1.5, rate=44100)
    flac = tmp_path / "t.flac"
    ffmpeg("-i", str(wav), str(flac))
    samples, _ = read_all(MicrophoneConfig(id="f", device=str(flac), realtime=False))
    assert len(samples) / SAMPLE_RATE == pytest.approx(1.5, abs=0.05)
    assert dominant_hz(samples) == pytest.approx(440, abs=5)
    track, _ = read_all(MicrophoneConfig(id="v", device=str(clip), realtime=False))
    assert len(track) / SAMPLE_RATE == pytest.approx(4.0, abs=0.1)
    assert dominant_hz(track) == pytest.approx(440, abs=5)


def test_files_are_paced_in_real_time_by_default(tmp_path: Path) -> None:
    """A realtime file source delivers audio no faster than it plays (chunks carry their due time)."""
    wav = make_tone_wav(tmp_path / "t.wav", seconds=1.0)
    start = time.monotonic()
    samples, _ = read_all(MicrophoneConfig(id="m", device=str(wav)))
    assert len(samples) == pytest.approx(SAMPLE_RATE, abs=400)
    assert time.monotonic() - start >= 0.9


def test_raw_pcm_from_a_fifo_survives_its_writer_closing(tmp_path: Path) -> None:
    """`fifo:PATH`: raw s16le from another process, resampled from its declared rate. When the writer
    closes, the source reports a stall (not an end); when a writer comes back, audio flows again."""
    fifo = tmp_path / "mic.fifo"
    os.mkfifo(fifo)
    tone = (np.sin(2 * np.pi * 440 * np.arange(48000) / 48000) * 12000).astype("<i2").tobytes()

    def writer() -> None:
        with open(fifo, "wb") as f:
            f.write(tone)

    mic = MicrophoneConfig(id="fifo", device=f"fifo:{fifo}", sample_rate=48000)
    states: list[SourceState] = []
    source = AudioSource(mic, on_health=lambda h: states.append(h.state))
    source.start()
    got: list[np.ndarray] = []
    try:
        for round_ in range(2):
            threading.Thread(target=writer).start()
            deadline = time.monotonic() + 10
            while sum(len(c) for c in got) < 16000 * (round_ + 1) - 200 and time.monotonic() < deadline:
                chunk = source.chunks.get(timeout=0.1)
                if chunk is not None:
                    got.append(chunk.samples)
            if round_ == 0:  # the writer has gone: wait for the watchdog to call it a stall
                deadline = time.monotonic() + 10
                while SourceState.STALLED not in states and time.monotonic() < deadline:
                    source.supervisor.check_stall()
                    time.sleep(0.1)
    finally:
        source.stop()
    samples = np.concatenate(got)
    assert len(samples) == pytest.approx(32000, abs=400)
    assert dominant_hz(samples) == pytest.approx(440, abs=5)
    assert states.count(SourceState.STALLED) == 1
    assert states[-2:] == [SourceState.STREAMING, SourceState.STOPPED]
    assert SourceState.ENDED not in states
    assert source.overruns == 0


def test_raw_pcm_on_stdin_paced_in_real_time(tmp_path: Path) -> None:
    """`-`: PCM piped in by `ffmpeg -re`, read by a real edged process until stdin closes."""
    wav = make_tone_wav(tmp_path / "t.wav", seconds=1.0, rate=16000)
    script = (
        "from edged.logs import configure_logging\n"
        "configure_logging('info', 'json')\n"
        "from edged.config.schema import MicrophoneConfig\n"
        "from edged.sources.audio.source import AudioSource\n"
        "src = AudioSource(MicrophoneConfig(id='stdin', device='-'), on_health=lambda h: None)\n"
        "src.start(); n = 0\n"
        "while src.supervisor.health().state.value != 'ended' or len(src.chunks):\n"
        "    c = src.chunks.get(timeout=0.5)\n"
        "    n += 0 if c is None else len(c.samples)\n"
        "print(n, src.overruns)\n"
        "src.stop()\n"
    )
    producer = subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-i", str(wav), "-f", "s16le",
                                 "-ac", "1", "-ar", "16000", "-"], stdout=subprocess.PIPE)
    out = subprocess.run([sys.executable, "-c", script], stdin=producer.stdout, capture_output=True, text=True,
                         timeout=30)
    producer.wait(10)
    assert producer.stdout is not None
    producer.stdout.close()
    samples, overruns = (int(v) for v in out.stdout.split())
    assert samples == pytest.approx(16000, abs=200)
    assert overruns == 0


@pytest.mark.slow
def test_rtsp_audio_track() -> None:
    """The audio of a real RTSP stream (Opus over RTP) through the ffmpeg reader."""
    server = RtspServer(audio=True).start()
    try:
        mic = MicrophoneConfig(id="rtsp", device=server.url)
        source = AudioSource(mic, on_health=lambda h: None)
        source.start()
        chunks = []
        deadline = time.monotonic() + 20
        while len(chunks) < 150 and time.monotonic() < deadline:  # 1.5 s of audio
            chunk = source.chunks.get(timeout=0.5)
            if chunk is not None:
                chunks.append(chunk)
        source.stop()
        samples = np.concatenate([c.samples for c in chunks])
        assert len(chunks) >= 150
        assert dominant_hz(samples[-8000:]) == pytest.approx(440, abs=8)
    finally:
        server.kill()


def test_missing_media_file_reports_and_retries(tmp_path: Path) -> None:
    """A microphone file that doesn't exist: RECONNECTING with the reason, never a crash."""
    mic = MicrophoneConfig(id="m", device=str(tmp_path / "gone.flac"))
    states = []
    source = AudioSource(mic, on_health=states.append)
    source.start()
    deadline = time.monotonic() + 5
    while not states and time.monotonic() < deadline:
        time.sleep(0.02)
    source.stop()
    assert states[0].state is SourceState.RECONNECTING
    assert "gone.flac: file not found" in states[0].reason


def test_a_file_read_faster_than_real_time_waits_for_a_slow_consumer(tmp_path: Path) -> None:
    """`realtime: false` files are lossless: a consumer slower than the decoder gets every sample."""
    wav = make_tone_wav(tmp_path / "t.wav", seconds=2.0, rate=16000)
    mic = MicrophoneConfig(id="file", device=str(wav), realtime=False, queue_seconds=0.05)
    source = AudioSource(mic, on_health=lambda h: None)
    source.start()
    got = 0
    try:
        while got < 32000:
            chunk = source.chunks.get(timeout=5)
            assert chunk is not None, f"stopped after {got} samples"
            got += len(chunk.samples)
            if chunk.seq % 20 == 0:
                time.sleep(0.1)  # far behind a decoder that fills the 5-chunk queue in microseconds
    finally:
        source.stop()
    assert got == 32000
    assert source.overruns == 0


def test_live_input_with_a_stuck_consumer_counts_overruns(tmp_path: Path) -> None:
    """Live input cannot wait for a stuck consumer: chunks beyond the queue are dropped and counted."""
    fifo = tmp_path / "mic"
    os.mkfifo(fifo)
    mic = MicrophoneConfig(id="live", device=f"fifo:{fifo}", queue_seconds=0.05)
    source = AudioSource(mic, on_health=lambda h: None)
    source.start()
    try:
        with open(fifo, "wb") as w:
            w.write(np.zeros(16000, np.int16).tobytes())  # 1 s of audio nobody reads
            w.flush()
            deadline = time.monotonic() + 10
            while source.overruns < 10 and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        source.stop()
    assert source.overruns >= 10
    assert len(source.chunks) <= source.chunks.maxsize


def test_a_microphone_without_keyword_spotting_is_not_opened(tmp_path: Path) -> None:
    """`keywords: false`: nothing would consume its audio, so the device is left alone and says why."""
    from edged.config import parse_config
    from edged.events import Event, SourceHealth
    from edged.pipeline import Pipeline

    wav = make_tone_wav(tmp_path / "t.wav", seconds=1.0)
    config = parse_config(f"state_dir: {tmp_path}\nmodels: {{captioner: {{backend: none}}}}\n"
                          f"microphones:\n  hall: {{device: {wav}, keywords: false}}\n")
    published: list[Event] = []
    pipeline = Pipeline(config, published.append, lambda cam: None)
    pipeline.start()
    try:
        assert "hall" not in pipeline.microphones
        health = [e for e in published if isinstance(e, SourceHealth) and e.source == "hall"]
        assert [(h.state, h.reason) for h in health] == [("disabled", "keyword spotting is off (keywords: false)")]
    finally:
        pipeline.stop()


def test_redaction_finds_credentials_anywhere_in_a_line() -> None:
    """Child stderr lines quote urls mid-sentence: every `scheme://user:pass@` and the literal password go."""
    line = ("[concat @ 0x55] Impossible to open 'rtsp://cam:se%20cret@10.0.0.2:554/live' and "
            "http://u:p@h/x; the password was se cret")
    assert redact_text(line, ["se cret", "se%20cret"]) == (
        "[concat @ 0x55] Impossible to open 'rtsp://cam:***@10.0.0.2:554/live' and http://u:***@h/x; "
        "the password was ***")
    assert redact_text("rtsp://cam@10.0.0.2:554/live?a=b:c@d") == "rtsp://cam@10.0.0.2:554/live?a=b:c@d"


def read_chunks(source: AudioSource, n: int, timeout: float) -> list[np.ndarray]:
    got: list[np.ndarray] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        chunk = source.chunks.get(timeout=0.2)
        if chunk is not None:
            got.append(chunk.samples)
    return got


@pytest.mark.slow
def test_a_stream_microphone_waits_for_its_server_without_spawning_ffmpeg() -> None:
    """A stream whose server is down: the status says "refused" and no ffmpeg is started while it stays down;
    once the server answers, audio flows well before the 30 s back-off would have tried again."""
    server = RtspServer(audio=True)
    states: list[Health] = []
    mic = MicrophoneConfig(id="m", device=server.url, reconnect=BackoffConfig(initial=30.0, max=30.0))
    source = AudioSource(mic, on_health=states.append)
    source.start()
    try:
        deadline = time.monotonic() + 1.5
        spawned = []
        while time.monotonic() < deadline:
            spawned += ffmpeg_cmdlines(os.getpid())
            time.sleep(0.05)
        assert spawned == []
        assert states[-1].state is SourceState.RECONNECTING
        assert "refused" in states[-1].reason.lower()
        server.start()
        assert len(read_chunks(source, 100, 15)) == 100
    finally:
        source.stop()
        server.kill()


@pytest.mark.slow
def test_camera_audio_behind_a_password_keeps_it_out_of_argv() -> None:
    """A camera stream that needs a login (real RTSP server, basic auth): its audio flows, the ffmpeg that
    decodes it has no password on its command line, and it comes back after the server restarts."""
    server = RtspServer(audio=True, login=("cam", PASSWORD)).start()
    states: list[Health] = []
    source = AudioSource(MicrophoneConfig(id="door", device="camera"), on_health=states.append,
                         camera_url=with_password(server.url, PASSWORD))
    try:
        with capture_logs() as logs:
            source.start()
            first = read_chunks(source, 150, 20)  # 1.5 s
            assert len(first) == 150
            assert dominant_hz(np.concatenate(first)[-8000:]) == pytest.approx(440, abs=8)
            cmdlines = ffmpeg_cmdlines(os.getpid())
            assert len(cmdlines) == 1
            assert_hidden(cmdlines[0], PASSWORD)
            server.kill()
            server.start()
            again = read_chunks(source, 150, 30)
            assert len(again) == 150
        assert any(h.state is SourceState.RECONNECTING for h in states)
        assert_hidden(repr(logs) + repr(states), PASSWORD)
    finally:
        source.stop()
        server.kill()


@pytest.mark.slow
def test_a_wrong_camera_password_is_reported_without_revealing_it() -> None:
    """A wrong password: the status says 401 (ffmpeg's own error line, redacted), and neither password shows up
    in the health reason, the logs or ffmpeg's command line."""
    server = RtspServer(audio=True, login=("cam", PASSWORD)).start()
    states: list[Health] = []
    source = AudioSource(MicrophoneConfig(id="door", device="camera"), on_health=states.append,
                         camera_url=with_password(server.url, WRONG))
    cmdlines: list[bytes] = []
    try:
        with capture_logs() as logs:
            source.start()
            deadline = time.monotonic() + 20
            while not any("401" in h.reason for h in states) and time.monotonic() < deadline:
                cmdlines += ffmpeg_cmdlines(os.getpid())
                time.sleep(0.02)
        assert any("401" in h.reason for h in states), [h.reason for h in states]
        assert "rtsp://cam:***@" in states[-1].reason
        assert cmdlines
        assert_hidden(b"".join(cmdlines) + (repr(logs) + repr(states)).encode(), PASSWORD, WRONG)
    finally:
        source.stop()
        server.kill()


@pytest.mark.slow
def test_the_daemon_never_shows_a_camera_password(tmp_path: Path, broker: Broker) -> None:
    """`edged run` with two cameras behind a login, one with the right password and one with a wrong one,
    each with its microphone on the camera's audio (debug logging, FFmpeg's own errors included): the right
    one's audio reaches keyword spotting, the wrong one reports 401, and no password appears in any ffmpeg's
    command line, in the log or on MQTT."""
    server = RtspServer(audio=True, login=("cam", PASSWORD)).start()
    (tmp_path / "good.pass").write_text(PASSWORD + "\n")
    (tmp_path / "bad.pass").write_text(WRONG + "\n")
    config = tmp_path / "edged.yaml"
    config.write_text(
        f"device: {{id: pw}}\nstate_dir: {tmp_path / 'state'}\nlog: {{level: debug, format: json}}\n"
        f"mqtt: {{port: {broker.port}, stats_interval: 1s}}\nmodels: {{captioner: {{backend: none}}}}\ncameras:\n"
        f"  door: {{url: '{server.url}', password_file: {tmp_path / 'good.pass'},\n"
        f"    microphone: {{id: door_mic, device: camera}}}}\n"
        f"  gate: {{url: '{server.url}', password_file: {tmp_path / 'bad.pass'},\n"
        f"    microphone: {{id: gate_mic, device: camera}}}}\n")
    sub = Subscriber(broker.port, ["edged/pw/#"]).start()
    daemon = DaemonProcess(config)
    try:
        sub.wait_topic("edged/pw/door_mic/status", b"online", timeout=30)
        sub.wait_for(lambda m: any(x.topic == "edged/pw/stats"
                                   and json.loads(x.payload)["sources"].get("door_mic", {}).get("audio_s", 0) > 1
                                   for x in m), timeout=30)  # the keyword spotter has heard the camera
        sub.wait_for(lambda m: any(x.topic == "edged/pw/gate_mic/health" and b"401" in x.payload for x in m), 30)
        cmdlines = ffmpeg_cmdlines(daemon.proc.pid)
        assert cmdlines
        assert_hidden(b"".join(cmdlines), PASSWORD, WRONG)
    finally:
        assert daemon.stop() == 0
        sub.stop()
        server.kill()
    assert_hidden(daemon.log_path.read_bytes(), PASSWORD, WRONG)
    assert_hidden(b"".join(m.payload for m in sub.messages), PASSWORD, WRONG)
