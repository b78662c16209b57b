"""A private PulseAudio server whose one capture source is a pipe: a real ALSA microphone for tests.

This machine has no sound card and no ALSA loopback module. PulseAudio's pipe source gives the
ALSA `pulse` plugin (libasound2-plugins) a capture device, so edged's ALSA reader runs its real
stack (sounddevice -> PortAudio -> ALSA -> pulse) over audio the test writes into the pipe.
Clients reach the server through `env` (PULSE_SERVER, and a HOME with no user config).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import BinaryIO

RATE = 16000


class PulseMic:
    def __init__(self, workdir: Path) -> None:
        if shutil.which("pulseaudio") is None:
            raise AssertionError("pulseaudio is missing: run script/setup test (it installs it as root)")
        self.dir = workdir
        self.fifo = workdir / "mic.fifo"
        self.socket = workdir / "native"
        self.env = {"PULSE_SERVER": f"unix:{self.socket}", "HOME": str(workdir), "XDG_RUNTIME_DIR": str(workdir)}
        self._proc: subprocess.Popen[bytes] | None = None
        self._feeder: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending = b""
        self._pipe: BinaryIO | None = None

    def start(self) -> PulseMic:
        self._log = open(self.dir / "pulseaudio.log", "wb")  # noqa: SIM115
        self._proc = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disable-shm=yes",
             "--use-pid-file=no", "-L", f"module-native-protocol-unix socket={self.socket} auth-anonymous=1",
             "-L", f"module-pipe-source file={self.fifo} format=s16le rate={RATE} channels=1 source_name=edged_test"],
            env={**os.environ, **self.env}, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not self.fifo.exists() or not self.socket.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"pulseaudio did not start: {(self.dir / 'pulseaudio.log').read_text()}")
            time.sleep(0.05)
        self._pipe = open(self.fifo, "wb", buffering=0)  # noqa: SIM115 (closed in stop)
        self._feeder = threading.Thread(target=self._feed, name="pulse-feed", daemon=True)
        self._feeder.start()
        return self

    def play(self, pcm: bytes) -> None:
        """Queue 16 kHz s16le mono `pcm`; the microphone hears it in real time, silence before and after."""
        with self._lock:
            self._pending += pcm

    def _feed(self) -> None:
        # Like a real microphone the pipe never goes quiet: 20 ms blocks, real-time paced, silence
        # when nothing is queued (with no data at all the source would deliver nothing, not silence).
        block = RATE * 2 // 50
        start = time.monotonic()
        i = 0
        while not self._stop.is_set():
            with self._lock:
                data, self._pending = self._pending[:block], self._pending[block:]
            assert self._pipe is not None
            try:
                self._pipe.write(data.ljust(block, b"\0"))
            except (BrokenPipeError, ValueError):
                return
            i += 1
            time.sleep(max(0.0, start + i * 0.02 - time.monotonic()))

    def recording_clients(self) -> int:
        """How many streams are capturing from the microphone now (PulseAudio's source outputs)."""
        out = subprocess.run(["pactl", "list", "short", "source-outputs"], env={**os.environ, **self.env},
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return len([line for line in out.splitlines() if line.strip()])

    def stop(self) -> None:
        self._stop.set()
        if self._feeder is not None:
            self._feeder.join(5)
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._log.close()
        if self._pipe is not None:
            with contextlib.suppress(BrokenPipeError):
                self._pipe.close()
