"""What every benchmark prints beside its figures: the machine, the command, the date, tables, and a
section of a Markdown report rewritten in place (between marker comments), keeping the rest."""

from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType


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


SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8",
              "asimd", "asimddp", "i8mm", "bf16", "sve")


def cpu_flags() -> str:
    """The CPU's SIMD extensions that decide kernel speed (what `lscpu`'s Flags line says about them)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return "flags unknown"
    flags: set[str] = set()
    for line in text.splitlines():
        key, _sep, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    present = [f for f in SIMD_FLAGS if f in flags]
    return "SIMD: " + (" ".join(present) if present else "none of " + " ".join(SIMD_FLAGS))


def pyplot() -> ModuleType:
    """matplotlib's pyplot on its file-only backend (the `reports` extra); ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def machine() -> str:
    """CPU model, core count and architecture."""
    return f"{cpu_model()}, {os.cpu_count()} CPUs ({platform.machine()})"


def machine_line() -> str:
    """The machine, the OS and the date: what a benchmark figure needs beside it."""
    return f"{machine()}, {platform.system()} {platform.release()}, {today()}"


def today() -> str:
    return datetime.date.today().isoformat()


def command_line() -> str:
    return "edged " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for j, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def write_section(path: Path, name: str, body: str, title: str = "") -> None:
    """Replace the `name` section of Markdown file `path` (between marker comments), keeping the rest."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = path.read_text() if path.exists() else (f"# {title}\n\n" if title else "")
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
