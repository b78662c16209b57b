"""Process and board figures for stats: memory, threads, descriptors, CPU, load, SoC temperature."""

from __future__ import annotations

import glob
import os
import threading
from typing import Any


def _status_kb(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb() -> float:
    """Resident memory now (MiB)."""
    kb = _status_kb("VmRSS")
    return round(kb / 1024, 1) if kb is not None else 0.0


def peak_rss_mb() -> float:
    """Peak resident memory (MiB)."""
    kb = _status_kb("VmHWM")
    return round(kb / 1024, 1) if kb is not None else 0.0


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
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
