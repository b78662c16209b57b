"""`edged run` as a real process for tests, with its JSON log lines at hand."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class DaemonProcess:
    """`python -m edged run -c FILE` with its stderr (JSON log lines) collected."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = config.with_suffix(".log")
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "edged", "run", "-c", str(config)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})

    def lines(self) -> list[dict[str, object]]:
        out = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(raw))
            except json.JSONDecodeError:
                out.append({"event": "non_json_line", "raw": raw})
        return out

    def wait_log(self, event: str, timeout: float = 20.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines():
                if line.get("event") == event:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {event!r} in the log: {self.lines()[-10:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(10)
        self.log.close()
        return code
