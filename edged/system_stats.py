"""Process and board figures for stats: memory, threads, descriptors, CPU, load, SoC temperature."""

from __future__ import annotations

import glob
import os
import threading
from typing import Any


def _status_number(field: str, pid: int | str) -> float | None:
    """A number from /proc/<pid>/status (kB for the Vm* fields)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory now (MiB) of this process, or of `pid`."""
    kb = _status_number("VmRSS", pid)
    return round(kb / 1024, 1) if kb is not None else 0.0


def peak_rss_mb() -> float:
    """Peak resident memory (MiB)."""
    kb = _status_number("VmHWM", "self")
    return round(kb / 1024, 1) if kb is not None else 0.0


def os_threads(pid: int | str = "self") -> int:
    """Threads of the process as the kernel counts them (native ones included), -1 if unreadable."""
    n = _status_number("Threads", pid)
    return int(n) if n is not None else -1


def open_fds(pid: int | str = "self") -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def soc_temperature_c() -> float | None:
    """The hottest thermal zone (Raspberry Pi and Jetson both expose them), in degrees Celsius."""
    temps = []
    for path in glob.glob("/sys/class/thermal/thermal_zone*/temp"):
        try:
            with open(path, encoding="ascii") as f:
                temps.append(int(f.read().strip()) / 1000.0)
        except (OSError, ValueError):
            continue
    return round(max(temps), 1) if temps else None


def system_stats() -> dict[str, Any]:
    times = os.times()
    return {
        "rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb(), "threads": threading.active_count(),
        "open_fds": open_fds(), "cpu_s": round(times.user + times.system, 2),
        "load1": round(os.getloadavg()[0], 2), "temperature_c": soc_temperature_c(),
    }
