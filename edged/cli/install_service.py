"""`edged install-service [--dry-run]`: install the systemd unit, the `edged` user and a config.

Every step is a shell command or a file write; `--dry-run` prints them all and changes nothing.
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

UNIT_TARGET = Path("/etc/systemd/system/edged.service")
DEFAULT_EXE = "/opt/edged/.venv/bin/edged"
CONFIG_DIR = Path("/etc/edged")


@dataclass(frozen=True)
class Step:
    """A command to run, or a file to write."""

    describe: str
    argv: tuple[str, ...] = ()
    write: Path | None = None
    content: str = ""
    skip_if: Path | None = None  # not done when this path already exists


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("install-service", help="install edged as a systemd service (root)")
    p.add_argument("--dry-run", action="store_true", help="print what would be done, do nothing")
    p.add_argument("--config", default=None, help="config to install as /etc/edged/config.yaml if none exists")
    p.add_argument("--no-start", action="store_true", help="enable the service but don't start it now")
    p.set_defaults(func=run)


def unit_text(exe: str) -> str:
    """The shipped unit, pointing at this installation's `edged`."""
    unit = importlib.resources.files("edged").joinpath("data/edged.service")  # package data: works from a wheel
    text = unit.read_text(encoding="utf-8").replace(DEFAULT_EXE, exe)
    if exe.startswith(("/home/", "/root/")):  # ProtectHome=yes would hide the program itself
        text = text.replace("ProtectHome=yes", "ProtectHome=read-only")
    return text


def plan(exe: str, config: Path | None, start: bool) -> list[Step]:
    steps = [
        Step("create the system user 'edged' (groups video, audio)",
             ("useradd", "--system", "--home-dir", "/var/lib/edged", "--shell", "/usr/sbin/nologin",
              "--groups", "video,audio", "edged")),
        Step(f"install the unit as {UNIT_TARGET}", write=UNIT_TARGET, content=unit_text(exe)),
        Step(f"create {CONFIG_DIR}", ("install", "-d", "-m", "0750", "-g", "edged", str(CONFIG_DIR))),
    ]
    if config is not None:
        steps.append(Step(f"install {config} as {CONFIG_DIR / 'config.yaml'} (kept if one exists)",
                          ("install", "-m", "0640", "-g", "edged", str(config), str(CONFIG_DIR / "config.yaml")),
                          skip_if=CONFIG_DIR / "config.yaml"))
    steps += [
        Step("reload systemd", ("systemctl", "daemon-reload")),
        Step("enable edged" + (" and start it" if start else ""),
             ("systemctl", "enable", *(["--now"] if start else []), "edged.service")),
    ]
    return steps


def run(args: argparse.Namespace) -> int:
    exe = shutil.which("edged") or str(Path(sys.executable).with_name("edged"))
    config = Path(args.config).resolve() if args.config else None
    steps = plan(exe, config, not args.no_start)
    if args.dry_run:
        for step in steps:
            print(f"# {step.describe}")
            if step.write is not None:
                print(f"cat > {step.write} <<'UNIT'\n{step.content}UNIT")
            else:
                print(shlex.join(step.argv))
        return 0
    if os.geteuid() != 0:
        print("install-service needs root: sudo edged install-service (or --dry-run to see the steps)",
              file=sys.stderr)
        return 2
    for step in steps:
        if step.skip_if is not None and step.skip_if.exists():
            continue
        print(f"- {step.describe}")
        if step.write is not None:
            step.write.write_text(step.content, encoding="utf-8")
            continue
        result = subprocess.run(step.argv, check=False)
        if result.returncode not in (0, 9):  # useradd: 9 = the user exists already
            print(f"failed: {shlex.join(step.argv)} (exit {result.returncode})", file=sys.stderr)
            return 1
    return 0
