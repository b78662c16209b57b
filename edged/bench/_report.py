"""Shared bits of the benchmark reports: machine description, and rewriting one section of a Markdown file."""

from __future__ import annotations

import datetime
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path


def machine() -> str:
    """CPU model and core count as `lscpu` tells them (or what Python knows)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return f"{platform.machine()} ({platform.processor() or 'unknown CPU'})"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    model = fields.get("Model name", platform.processor()).strip()
    cpus = fields.get("CPU(s)", "?").strip()
    return f"{model}, {cpus} CPUs ({platform.machine()})"


def command_line() -> str:
    return "edged " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def today() -> str:
    return datetime.date.today().isoformat()


def write_section(path: Path, name: str, body: str, title: str = "") -> None:
    """Replace the `name` section of Markdown file `path` (between marker comments), keeping the rest."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = path.read_text() if path.exists() else (f"# {title}\n\n" if title else "")
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
