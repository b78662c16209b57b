"""Audio readers: each opens one kind of input and yields blocks of 16 kHz mono float32 samples.

- `WavReader`: WAV files (any PCM/float format, any rate, any channel count), converted here.
- `PcmReader`: raw s16le PCM on stdin or a FIFO (`sample_rate`/`channels` from config).
- `FfmpegReader`: everything FFmpeg opens (FLAC and other files, a media file's audio track, RTSP
  audio), through an `ffmpeg` subprocess that resamples to 16 kHz mono s16le. A subprocess rather
  than PyAV: ffmpeg is already a system dependency for the camera side, it decodes every codec and
  container the board's FFmpeg knows, a crash in a demuxer cannot take the daemon with it, and there
  is no wheel/ABI coupling to the board's FFmpeg version. A url with a password never goes into
  ffmpeg's arguments (see `ffmpeg_input`), and its error lines are redacted before edged keeps them.
- `AlsaReader`: ALSA capture devices by name through PortAudio (`sounddevice`, the `alsa` extra;
  Raspberry Pi OS ships `libportaudio2`). The callback only copies into a bounded queue;
  overflows reported by PortAudio are counted as overruns.

`read(timeout)` returns a block (possibly empty when nothing arrived in time), or raises
`SourceEnded` at the end of a finite input and `AudioError` on failure.
"""

from __future__ import annotations

import collections
import os
import select
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from edged.config.schema import MicrophoneConfig, microphone_kind
from edged.config.urls import redact_text, redact_url, url_secrets
from edged.queues import BoundedQueue, DropPolicy
from edged.sources.audio.chunk import SAMPLE_RATE
from edged.sources.audio.convert import StreamResampler, decode_pcm, to_mono
from edged.sources.audio.wav import WavError, open_wav
from edged.sources.reach import connect_error
from edged.supervise import PeerDown, SourceEnded

_BLOCK_SECONDS = 0.05  # how much a reader hands on at a time
MIN_RATE = 8000  # Hz; below this there is no speech band left to spot keywords in
# RTSP input: over TCP, and a dead peer ends ffmpeg after 5 s without data (the supervisor restarts it).
_RTSP_OPTIONS = (("rtsp_transport", "tcp"), ("timeout", "5000000"))
# What ffmpeg may use to reach a stream named in a concat list read from a pipe (by default a list may
# only name local files).
_OLD_CONCAT = "unknown keyword 'option'"  # ffmpeg < 5.0: its concat lists take no per-input options
_STREAM_PROTOCOLS = "pipe,rtsp,rtsps,rtp,srtp,tcp,udp,tls,http,https,httpproxy,crypto,data"


class AudioError(RuntimeError):
    """An audio input failed; the message names the input (never a password)."""


class AudioUnreachable(AudioError, PeerDown):
    """Nothing answers at a stream's host and port (refused, timed out, no route)."""


class AudioReader(Protocol):
    """An open audio input."""

    live: bool  # paced by the outside world (devices, streams, pipes) rather than by us
    overruns: int  # input lost before edged could read it (device overflows)

    def read(self, timeout: float) -> np.ndarray:
        """The next block of 16 kHz mono float32 samples."""

    def close(self) -> None: ...


class WavReader:
    """Streams a WAV file, converting format, channels and rate."""

    live = False

    def __init__(self, path: str) -> None:
        try:
            self._file, self.info = open_wav(path)
        except FileNotFoundError:
            raise AudioError(f"{path}: file not found") from None
        except WavError as exc:
            raise AudioError(str(exc)) from None
        if self.info.sample_rate < MIN_RATE:
            self._file.close()
            raise AudioError(f"{path}: sample rate {self.info.sample_rate} Hz is too low for keyword spotting "
                             f"(need >= {MIN_RATE} Hz; models expect {SAMPLE_RATE} Hz)")
        self._path = path
        self._resampler = StreamResampler(self.info.sample_rate)
        self._left = self.info.data_bytes
        self._flushed = False
        self.overruns = 0

    def read(self, timeout: float) -> np.ndarray:
        frames = max(1, int(self.info.sample_rate * _BLOCK_SECONDS))
        want = min(self._left, frames * self.info.frame_bytes)
        data = self._file.read(want) if want else b""
        self._left -= len(data)
        if not data:
            if self._flushed:
                raise SourceEnded("end of file")
            self._flushed = True
            return self._resampler.flush()
        return self._resampler.process(to_mono(decode_pcm(data, self.info.fmt, self.info.channels)))

    def close(self) -> None:
        self._file.close()


class _PipeReader:
    """Reads s16le PCM from a file descriptor with select(), so a stop is never stuck in read()."""

    def __init__(self, stream: BinaryIO, rate: int, channels: int, name: str) -> None:
        self._stream = stream
        self._fd = stream.fileno()
        self._channels = channels
        self._resampler = StreamResampler(rate)
        self._pending = b""
        self._name = name
        self._block = max(1, int(rate * _BLOCK_SECONDS)) * 2 * channels
        self.overruns = 0

    def read(self, timeout: float) -> np.ndarray:
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return np.zeros(0, np.float32)
        data = os.read(self._fd, self._block)
        if not data:
            self._on_eof()
        data, self._pending = self._split(self._pending + data)
        return self._resampler.process(to_mono(decode_pcm(data, "s16", self._channels)))

    def _split(self, data: bytes) -> tuple[bytes, bytes]:
        frame = 2 * self._channels
        cut = len(data) - len(data) % frame
        return data[:cut], data[cut:]

    def _on_eof(self) -> None:
        raise SourceEnded(f"{self._name} closed")


class PcmReader(_PipeReader):
    """Raw PCM on stdin or a FIFO.

    A FIFO is opened read-write: edged then holds a writer end itself, so a producer that closes
    and comes back later is a pause (the stall watchdog reports it), not an end of stream, and
    opening never blocks waiting for a producer. stdin that closes is the end.
    """

    live = True

    def __init__(self, mic: MicrophoneConfig) -> None:
        self._owned: BinaryIO | None = None
        if mic.device == "-":
            stream: BinaryIO = sys.stdin.buffer
            name = "stdin"
        else:
            path = mic.device.removeprefix("fifo:")
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                raise AudioError(f"{path}: no such FIFO (make it with mkfifo)") from None
            stream = self._owned = os.fdopen(fd, "rb", buffering=0)
            name = path
        super().__init__(stream, mic.sample_rate, mic.channels, name)

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()


class FfmpegReader(_PipeReader):
    """An `ffmpeg` subprocess decoding any file or stream's audio to 16 kHz mono s16le."""

    def __init__(self, url: str, *, loop: bool, shown: str) -> None:
        exe = shutil.which("ffmpeg")
        if exe is None:
            raise AudioError(f"{shown}: reading this input needs ffmpeg (apt-get install ffmpeg)")
        self.live = url.lower().startswith(("rtsp://", "rtsps://", "http://", "https://"))
        if not self.live and not Path(url).is_file():
            raise AudioError(f"{shown}: file not found")
        self._shown = shown
        self._secrets = url_secrets(url)
        args, script = ffmpeg_input(url, loop=loop and not self.live, shown=shown)
        cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", *args,
               "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le", "pipe:1"]
        stdin = subprocess.DEVNULL if script is None else subprocess.PIPE
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=stdin)
        if script is not None:
            self._send_script(script)
        assert self._proc.stdout is not None
        assert self._proc.stderr is not None
        self._errors: collections.deque[str] = collections.deque(maxlen=5)
        self._stderr_thread = threading.Thread(target=self._drain_stderr, name="ffmpeg-stderr", daemon=True)
        self._stderr_thread.start()
        super().__init__(self._proc.stdout, SAMPLE_RATE, 1, shown)  # type: ignore[arg-type]  # a binary pipe

    def _send_script(self, script: bytes) -> None:
        assert self._proc.stdin is not None
        try:  # a few hundred bytes: the pipe takes them whole, ffmpeg reads them at its open
            self._proc.stdin.write(script)
        except BrokenPipeError:
            pass  # ffmpeg already exited: its status and error line are reported at the end of its output
        finally:
            self._proc.stdin.close()

    def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in iter(self._proc.stderr.readline, b""):  # ffmpeg quotes urls anywhere in a line
            self._errors.append(redact_text(line.decode(errors="replace").strip(), self._secrets))

    def _on_eof(self) -> None:
        code = self._proc.wait(timeout=5)
        self._stderr_thread.join(1)
        last = self._errors[-1] if self._errors else ""
        if code == 0 and not self.live:
            raise SourceEnded("end of file")
        if any(_OLD_CONCAT in line for line in self._errors):
            raise AudioError(f"{self._shown}: this ffmpeg is older than 5.0 and cannot be given a password "
                             f"privately (edged never puts one on a command line): install ffmpeg 5.0 or later")
        detail = f": {last}" if last else ""
        raise AudioError(f"{self._shown}: ffmpeg exited with status {code}{detail}")

    def close(self) -> None:
        assert self._proc.stdout is not None
        self._proc.stdout.close()  # a writer blocked on the pipe gets EPIPE at once
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                self._proc.kill()  # nothing to flush: it only decodes
                self._proc.wait()
        self._stderr_thread.join(1)
        assert self._proc.stderr is not None
        self._proc.stderr.close()


def ffmpeg_input(url: str, *, loop: bool, shown: str) -> tuple[list[str], bytes | None]:
    """ffmpeg's arguments that open `url`, and the script to write to its stdin (None: nothing to write).

    A url with a password never goes into the arguments: any local user can read a process's command
    line (`ps`, /proc/PID/cmdline). ffmpeg gets it in a one-entry concat list on its stdin instead, with
    the input's options; only the pipe's two ends (edged and its ffmpeg) ever see it. Options in a
    concat list need ffmpeg 5.0 (Debian 12, Raspberry Pi OS Bookworm); an older one says so in the status.
    """
    options = _RTSP_OPTIONS if url.lower().startswith(("rtsp://", "rtsps://")) else ()
    if not url_secrets(url):
        args = [arg for key, value in options for arg in (f"-{key}", value)]
        return [*args, *(["-stream_loop", "-1"] if loop else []), "-i", url], None
    if any(ch in url for ch in "\r\n\0"):
        raise AudioError(f"{shown}: a line break in the url")  # it would end the list's entry early
    quoted = "'" + url.replace("'", "'\\''") + "'"  # the list's quoting: '\'' is a quote within quotes
    lines = ["ffconcat version 1.0", f"file {quoted}", *(f"option {key} {value}" for key, value in options)]
    args = ["-protocol_whitelist", _STREAM_PROTOCOLS, "-f", "concat", "-safe", "0", "-i", "pipe:0"]
    return args, ("\n".join(lines) + "\n").encode()


class AlsaReader:
    """An ALSA capture device by name (`hw:1,0`, `default`, a PortAudio device name or index)."""

    live = True

    def __init__(self, mic: MicrophoneConfig) -> None:
        try:
            import sounddevice as sd
        except (ImportError, OSError) as exc:
            raise AudioError(f"{mic.device}: ALSA capture needs the alsa extra (pip install 'edged[alsa]') "
                             f"and libportaudio2 ({exc})") from None
        self._sd = sd
        device = find_device(sd, mic.device)
        rate = _supported_rate(sd, device, mic.channels)
        self._resampler = StreamResampler(rate)
        self._channels = mic.channels
        self._blocks: BoundedQueue[np.ndarray] = BoundedQueue(f"alsa-{mic.id}", 64, DropPolicy.DROP_OLDEST)
        self.overruns = 0
        self._stream = sd.InputStream(device=device, samplerate=rate, channels=mic.channels, dtype="float32",
                                      blocksize=int(rate * 0.02), callback=self._callback)
        self._stream.start()

    def _callback(self, data: np.ndarray, _frames: int, _time: Any, status: Any) -> None:
        if status.input_overflow:
            self.overruns += 1
        if not self._blocks.put(data.copy()):
            self.overruns += 1

    def read(self, timeout: float) -> np.ndarray:
        block = self._blocks.get(timeout)
        if block is None:
            if not self._stream.active:
                raise AudioError("capture stream stopped (device unplugged?)")
            return np.zeros(0, np.float32)
        return self._resampler.process(to_mono(block))

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()


def find_device(sd: Any, name: str) -> int:
    """The PortAudio input device for an ALSA name; the error lists the devices there are."""
    devices = [(i, d) for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0]
    if name.isdigit() and any(i == int(name) for i, _ in devices):
        return int(name)
    for i, d in devices:
        if d["name"] == name:
            return i
    for i, d in devices:  # PortAudio names ALSA hardware "USB Audio: - (hw:1,0)"
        if f"({name})" in d["name"] or name in d["name"]:
            return i
    known = "; ".join(f"{i}: {d['name']}" for i, d in devices) or "none"
    raise AudioError(f"no capture device {name!r} (capture devices: {known})")


def _supported_rate(sd: Any, device: int, channels: int) -> int:
    """16 kHz when the device takes it, else its default rate (resampled here)."""
    try:
        sd.check_input_settings(device=device, samplerate=SAMPLE_RATE, channels=channels, dtype="float32")
        return SAMPLE_RATE
    except Exception:
        return int(sd.query_devices(device)["default_samplerate"])


def open_stream(url: str, *, loop: bool) -> FfmpegReader:
    """An ffmpeg reader for a network stream, once its host answers at all (an ffmpeg is not spawned
    against a dead camera, and the status says why at once)."""
    shown = redact_url(url)
    error = connect_error(url, 5.0)
    if error is not None:
        raise AudioUnreachable(f"{shown}: {error}")
    return FfmpegReader(url, loop=loop, shown=shown)


def open_reader(mic: MicrophoneConfig, camera_url: str | None) -> AudioReader:
    """Open the reader a microphone's config asks for."""
    kind = microphone_kind(mic.device)
    if kind == "camera":
        if camera_url is None:
            raise AudioError(f"{mic.id}: device 'camera' needs a co-located camera")
        return open_stream(camera_url, loop=mic.loop)
    if kind == "wav":
        return WavReader(mic.device)
    if kind in ("stdin", "fifo"):
        return PcmReader(mic)
    if kind == "stream":
        return open_stream(mic.device, loop=mic.loop)
    if kind == "media":
        return FfmpegReader(mic.device, loop=mic.loop, shown=redact_url(mic.device))
    return AlsaReader(mic)
