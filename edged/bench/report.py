"""Shared output helpers for benchmarks: the machine line and plain-text tables."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence


def cpu_model() -> str:
    """`model name` on x86, `Model`/`Hardware` on Raspberry Pi and Jetson."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        fields = {}
    clean = {k.strip().lower(): v.strip() for k, v in fields.items()}
    for key in ("model name", "model", "hardware"):
        if clean.get(key) and not clean[key].isdigit():
            return clean[key]
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """CPU model, core count, OS and date: what a benchmark figure needs beside it."""
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu_model()}, {os.cpu_count()} cores, {system}, {time.strftime('%Y-%m-%d')}"


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for j, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
